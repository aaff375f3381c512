"""Worker settings: one typed model that the environment and the command's flags feed, checked at load.

Pointing a worker at a real Kafka cluster is one variable: ``KAFKA_BROKER``; logging in
to it (SASL, TLS) is ``RATEHOUND_KAFKA_*``, see :mod:`stream.security`. Every other
variable is ``RATEHOUND_`` and the field's name in capitals, unless the field says otherwise
(``REDIS_URL``, ``RATEHOUND_CONFIG``, ``RATEHOUND_BATCH``). A value that cannot be used stops
the process at load with :class:`SettingsError`, which names the variable (or the flag).

>>> Settings(partitions=2).partitions, Settings.variable("batch_size")
(2, 'RATEHOUND_BATCH')
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from pydantic import AfterValidator, Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.security import KafkaSecurity


class SettingsError(ValueError):
    """A setting that cannot be used; the message names its variable (or the flag that gave it)."""

    def __init__(self, field: str, variable: str, detail: str):
        super().__init__(f"{variable}: {detail}")
        self.field, self.variable, self.detail = field, variable, detail


def _at_least(least: float) -> AfterValidator:
    """A number's least useful value: a partition count of 0, a batch of 0 or a commit interval of 0 s
    would start a worker that never does its job."""

    def check(value: float) -> float:
        if not (math.isfinite(value) and value >= least):
            raise ValueError(f"{value!r} must be a finite number of at least {least}")
        return value

    return AfterValidator(check)


def _port(value: int) -> int:
    if value > 65535:
        raise ValueError(f"{value} is not a port number")
    return value


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL that redis-py would take silently or fail on later; None if nothing.

    >>> redis_url_problem("redis://127.0.0.1:6379/0") is None, redis_url_problem("rediss://u:p@h:6380/3") is None
    (True, True)
    >>> redis_url_problem("redis://127.0.0.1:6379/abc")
    "database 'abc' is not a number (redis://HOST:PORT/DB)"
    >>> redis_url_problem("http://127.0.0.1:6379/0")
    "scheme 'http': expected redis://, rediss:// or unix://"
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as exc:
        return f"not a usable URL ({exc})"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"scheme {parts.scheme!r}: expected redis://, rediss:// or unix://"
    if parts.scheme == "unix":
        if not parts.path:
            return "unix:// needs the socket's path, e.g. unix:///run/redis.sock?db=0"
        dbs = parse_qs(parts.query).get("db", [])
    else:
        if not parts.hostname:
            return "no host (redis://HOST:PORT/DB)"
        dbs = [parts.path.strip("/")] if parts.path.strip("/") else []
        dbs += parse_qs(parts.query).get("db", [])
    for db in dbs:
        # redis-py reads a database it cannot parse as 0: a typo would write where nobody reads
        if not (db.isascii() and db.isdigit()):
            return f"database {db!r} is not a number (redis://HOST:PORT/DB)"
    return None


def _redis_url(url: str) -> str:
    problem = redis_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


Count = Annotated[int, _at_least(1)]


class Topics:
    """Topic names (``RATEHOUND_TOPIC_*``)."""

    __slots__ = ("requests", "dlq", "by_account", "by_group", "decisions")

    def __init__(self, requests: str, dlq: str, by_account: str, by_group: str, decisions: str):
        self.requests, self.dlq, self.by_account, self.by_group, self.decisions = (
            requests, dlq, by_account, by_group, decisions)


class Settings(BaseSettings):
    """Everything a worker needs to know about its surroundings (thresholds live in the config file)."""

    model_config = SettingsConfigDict(env_prefix="RATEHOUND_", frozen=True, extra="forbid",
                                      populate_by_name=True, validate_default=True)

    kafka_broker: str = Field("kafka://127.0.0.1:9092", validation_alias="KAFKA_BROKER",
                              description="Kafka bootstrap, kafka://HOST:PORT (several: separated by ;)")
    redis_url: Annotated[str, AfterValidator(_redis_url)] = Field(
        "redis://127.0.0.1:6379/0", validation_alias="REDIS_URL", description="Redis URL (redis://, rediss://, unix://)")
    config_path: str | None = Field(None, validation_alias="RATEHOUND_CONFIG",
                                    description="thresholds YAML (the shipped defaults when unset)")
    app_id: str = Field("ratehound", description="consumer groups and table names")
    partitions: Count = Field(4, description="partitions of ratehound's topics")
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, _at_least(1), AfterValidator(_port)] = Field(6066, description="port of /metrics")
    data_dir: str = "rh-worker-data"
    redis_prefix: str = Field("rh", description="Redis key prefix")
    batch_size: Count = Field(2000, validation_alias="RATEHOUND_BATCH")
    batch_within_s: Annotated[float, _at_least(0.001)] = 0.05
    snapshot_every_s: Annotated[float, _at_least(0.01)] = 1.0
    # How often acknowledged by-account input is committed (Faust's broker_commit_interval): input a
    # snapshot holds but not yet committed is read again after a crash and skipped, so this is only cost.
    commit_interval_s: Annotated[float, _at_least(0.01)] = 2.8
    replication_factor: Count = 1
    max_message_events: Count = 1000
    fetch_max_wait_ms: Count = 100
    rebalance_timeout_s: Annotated[float, _at_least(0.1)] = 6.0
    # A command gives up on an unreachable broker after this long, with one line naming it.
    connect_timeout_s: Annotated[float, _at_least(0.1)] = 10.0
    # SIGTERM to exit, whatever the broker does: past it the worker leaves without its last snapshot,
    # as after a SIGKILL (nothing is lost: the next owner reads the uncommitted input again).
    shutdown_timeout_s: Annotated[float, _at_least(1.0)] = 20.0
    # Tests only: events of this account make the detector raise, to prove nothing is lost when it does.
    fault_account: str | None = None
    topic_requests: str = "requests"
    topic_dlq: str = "requests.dlq"
    topic_by_account: str = "requests.by_account"
    topic_by_group: str = "requests.by_group"
    topic_decisions: str = "decisions"

    _kafka_security: KafkaSecurity = PrivateAttr()
    _ERRORS: ClassVar[dict[str, str]] = {
        "int_parsing": "{input!r} is not an integer", "int_from_float": "{input!r} is not an integer",
        "int_type": "{input!r} is not an integer", "float_parsing": "{input!r} is not a number",
        "float_type": "{input!r} is not a number", "extra_forbidden": "not a setting",
    }

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            field = next((f for f, info in type(self).model_fields.items() if name in (f, info.validation_alias)),
                         name)
            template = self._ERRORS.get(err["type"])
            detail = template.format(input=err.get("input")) if template else err["msg"].removeprefix("Value error, ")
            raise SettingsError(field, self.variable(field), detail) from None
        # Read from the environment here, with its own validation and messages (stream/security.py).
        self._kafka_security = KafkaSecurity.from_env()

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field."""
        info = cls.model_fields.get(field)
        alias = info.validation_alias if info is not None else None
        return alias if isinstance(alias, str) else f"RATEHOUND_{field.upper()}"

    @classmethod
    def describe(cls, field: str) -> str:
        """For a flag's help: the variable and the default, from the model (never restated elsewhere)."""
        info = cls.model_fields[field]
        default = "" if info.default is None else f", default {info.default}"
        return f"{info.description or field} (env {cls.variable(field)}{default})"

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_requests, self.topic_dlq, self.topic_by_account, self.topic_by_group,
                      self.topic_decisions)

    @property
    def kafka_security(self) -> KafkaSecurity:
        return self._kafka_security

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

    @property
    def redis_address(self) -> str:
        """The Redis URL without its password, for messages."""
        return redact(self.redis_url)


def redact(url: str) -> str:
    """A URL without the password it may hold.

    >>> redact("rediss://detector:s3cret@redis.internal:6380/0")
    'rediss://detector:***@redis.internal:6380/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else "***@"
    return parts._replace(netloc=user + parts.netloc.rsplit("@", 1)[1]).geturl()
