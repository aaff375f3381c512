"""Where a worker's output goes, behind one interface (``base.Sink``): Redis for the gateway
(``redis``), the decisions topic for the audit and the DLQ for bad input (``topics``)."""
