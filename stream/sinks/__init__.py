"""Where decisions go: Redis for the gateway, a Kafka topic for audit, and the DLQ for bad input."""
