"""ratehound's topics, created up front with the partition counts the workers expect."""

from __future__ import annotations

from stream.embedded import create_topics
from stream.settings import Settings


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic and its partitions: partitions are the unit of parallelism, all sized alike."""
    t, n = settings.topics, settings.partitions
    return {t.requests: n, t.dlq: n, t.by_account: n, t.by_group: n, t.decisions: n,
            f"{settings.app_id}-account_state-changelog": n}


def ensure_topics(settings: Settings) -> None:
    """Create what is missing (an existing topic is left as it is)."""
    create_topics(settings.bootstrap, topic_partitions(settings), replication_factor=settings.replication_factor,
                  client_config=settings.kafka_client_config)
