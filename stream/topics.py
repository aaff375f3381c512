"""ratehound's topics, created up front with the partition counts the workers expect, and the broker's
first answer: every command that needs Kafka waits for it a bounded time, then says so in one line."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from stream.settings import Settings


class BrokerUnreachable(RuntimeError):
    """No Kafka broker answered in time; the message names the address and the bound."""


@contextlib.contextmanager
def quiet_kafka_python() -> Iterator[None]:
    """kafka-python logs an ERROR line for every failed connection attempt, dozens while it waits; the
    caller reports the outcome once, so only its CRITICAL lines are let through meanwhile."""
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def wait_for_broker(settings: Settings) -> None:
    """Return once a Kafka broker at ``settings.bootstrap`` answers a metadata request; raise
    :class:`BrokerUnreachable` after ``settings.connect_timeout_s`` (RATEHOUND_CONNECT_TIMEOUT_S)."""
    bound = settings.connect_timeout_s
    deadline = time.monotonic() + bound
    with quiet_kafka_python():
        while True:
            left = deadline - time.monotonic()
            if kafka_ready(settings.bootstrap, timeout=max(0.2, min(2.0, left)),
                           client_config=settings.kafka_client_config):
                return
            if time.monotonic() + 0.5 >= deadline:
                raise BrokerUnreachable(f"no Kafka broker answered at {settings.bootstrap} within {bound:g} s "
                                        f"(KAFKA_BROKER; the wait is RATEHOUND_CONNECT_TIMEOUT_S)")
            time.sleep(0.5)


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic and its partitions: partitions are the unit of parallelism, all sized alike."""
    t, n = settings.topics, settings.partitions
    return {t.requests: n, t.dlq: n, t.by_account: n, t.by_group: n, t.decisions: n,
            f"{settings.app_id}-account_state-changelog": n}


def ensure_topics(settings: Settings) -> None:
    """Create what is missing (an existing topic is left as it is)."""
    create_topics(settings.bootstrap, topic_partitions(settings), replication_factor=settings.replication_factor,
                  client_config=settings.kafka_client_config)


def kafka_ready(bootstrap: str, timeout: float = 1.0, client_config: Mapping[str, Any] | None = None) -> bool:
    """Return True if a Kafka metadata request to ``bootstrap`` succeeds.

    ``client_config`` is kafka-python's security keywords (``Settings.kafka_client_config``).
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout * 1000),
            bootstrap_timeout_ms=int(timeout * 1000),
            client_id="ratehound-probe",
            **(client_config or {}),
        )
        admin.describe_cluster()
        return True
    except KafkaConfigurationError:
        # Our bug, not "broker not ready yet": don't spin until the timeout.
        raise
    except (KafkaError, OSError):
        return False
    finally:
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()


def create_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 10.0,
                  replication_factor: int = 1, client_config: Mapping[str, Any] | None = None) -> None:
    """Create ``{name: partitions}`` topics; existing ones are left alone.

    Returns once every new topic has a leader for each partition, so producers
    can send to it right away. ``client_config``: kafka-python's security keywords.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import for_code

    if not topics:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                             **(client_config or {}))
    try:
        result = admin.create_topics(
            {name: {"num_partitions": n, "replication_factor": replication_factor} for name, n in topics.items()},
            timeout_ms=int(timeout * 1000),
            raise_errors=False,
        )
        created = []
        for topic in result.get("topics", []):
            code = topic.get("error_code", 0)
            if code == 0:
                created.append(topic["name"])
            elif code != 36:  # TOPIC_ALREADY_EXISTS
                err = for_code(code)
                raise err(f"creating topic {topic['name']!r}: {topic.get('error_message') or err.__name__}")
        if created:
            admin.wait_for_topics(created)
    finally:
        admin.close()
