"""Worker settings from flags and the environment, with embedded defaults when nothing is set.

Pointing a worker at a real Kafka cluster is one variable: ``KAFKA_BROKER``; logging in
to it (SASL, TLS) is ``RATEHOUND_KAFKA_*``, see :mod:`stream.security`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from stream.security import KafkaSecurity


class SettingsError(ValueError):
    """A worker setting that cannot be used; the message names its variable."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_number(name: str, default: str, kind: type[int] | type[float]) -> Any:
    raw = _env(name, default)
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not {'an integer' if kind is int else 'a number'}") from None


def _number(name: str, default: str, kind: type[int] | type[float], least: float) -> Any:
    """A number field read from ``name``; ``least`` is its least useful value (a partition count of 0,
    a batch of 0 or a commit interval of 0 s would start a worker that never does its job)."""
    return field(default_factory=lambda: _env_number(name, default, kind), metadata={"env": name, "least": least})


@dataclass(frozen=True)
class Topics:
    """Topic names; each can be renamed through the environment."""

    requests: str = field(default_factory=lambda: _env("RATEHOUND_TOPIC_REQUESTS", "requests"))
    dlq: str = field(default_factory=lambda: _env("RATEHOUND_TOPIC_DLQ", "requests.dlq"))
    by_account: str = field(default_factory=lambda: _env("RATEHOUND_TOPIC_BY_ACCOUNT", "requests.by_account"))
    by_group: str = field(default_factory=lambda: _env("RATEHOUND_TOPIC_BY_GROUP", "requests.by_group"))
    decisions: str = field(default_factory=lambda: _env("RATEHOUND_TOPIC_DECISIONS", "decisions"))


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to know about its surroundings (thresholds live in the config file)."""

    kafka_broker: str = field(default_factory=lambda: _env("KAFKA_BROKER", "kafka://127.0.0.1:9092"))
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6379/0"))
    app_id: str = field(default_factory=lambda: _env("RATEHOUND_APP_ID", "ratehound"))
    partitions: int = _number("RATEHOUND_PARTITIONS", "4", int, 1)
    web_host: str = field(default_factory=lambda: _env("RATEHOUND_WEB_HOST", "127.0.0.1"))
    web_port: int = _number("RATEHOUND_WEB_PORT", "6066", int, 1)
    config_path: str | None = field(default_factory=lambda: os.environ.get("RATEHOUND_CONFIG"))
    data_dir: str = field(default_factory=lambda: _env("RATEHOUND_DATA_DIR", "rh-worker-data"))
    redis_prefix: str = field(default_factory=lambda: _env("RATEHOUND_REDIS_PREFIX", "rh"))
    batch_size: int = _number("RATEHOUND_BATCH", "2000", int, 1)
    batch_within_s: float = _number("RATEHOUND_BATCH_WITHIN_S", "0.05", float, 0.001)
    snapshot_every_s: float = _number("RATEHOUND_SNAPSHOT_EVERY_S", "1", float, 0.01)
    # How often acknowledged by-account input is committed (Faust's broker_commit_interval): input a
    # snapshot holds but not yet committed is re-read after a crash and skipped, so this is only cost.
    commit_interval_s: float = _number("RATEHOUND_COMMIT_INTERVAL_S", "2.8", float, 0.01)
    replication_factor: int = _number("RATEHOUND_REPLICATION_FACTOR", "1", int, 1)
    max_message_events: int = _number("RATEHOUND_MAX_MESSAGE_EVENTS", "1000", int, 1)
    fetch_max_wait_ms: int = _number("RATEHOUND_FETCH_MAX_WAIT_MS", "100", int, 1)
    rebalance_timeout_s: float = _number("RATEHOUND_REBALANCE_TIMEOUT_S", "6", float, 0.1)
    # Tests only: events of this account make the detector raise, to prove nothing is lost when it does.
    fault_account: str | None = field(default_factory=lambda: os.environ.get("RATEHOUND_FAULT_ACCOUNT"))
    topics: Topics = field(default_factory=Topics)
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity.from_env)

    def __post_init__(self) -> None:
        for f in fields(self):
            if "least" in f.metadata:
                value, least = getattr(self, f.name), f.metadata["least"]
                if not (math.isfinite(value) and value >= least):
                    raise SettingsError(f"{f.metadata['env']}: {value!r} must be a finite number of at least {least}")
        if self.web_port > 65535:
            raise SettingsError(f"RATEHOUND_WEB_PORT: {self.web_port} is not a port number")

    @property
    def broker_url(self) -> str:
        b = self.kafka_broker
        return b if "://" in b else f"kafka://{b}"

    @property
    def broker_credentials(self) -> Any:
        """``broker_credentials`` for ``faust.App`` (None for PLAINTEXT)."""
        return self.kafka_security.faust_credentials()

    @property
    def kafka_client_config(self) -> dict[str, Any]:
        """Security keyword arguments for kafka-python clients (``security_protocol``, ``sasl_*``, ``ssl_context``)."""
        return self.kafka_security.kafka_client_config()

    @property
    def bootstrap(self) -> str:
        """host:port list for kafka-python."""
        return ",".join(part.split("://", 1)[-1] for part in self.kafka_broker.split(";"))
