"""Shared pytest fixtures: the embedded Kafka broker, Redis URLs and a topic reader.

Environment overrides:

* ``KAFKA_BROKER`` (``127.0.0.1:9092`` or ``kafka://...``): use that broker instead of
  starting tansu.
* ``REDIS_URL``: the shared Redis to borrow a database from (default
  ``redis://127.0.0.1:6379``).
* ``RATEHOUND_TEST_REDIS_DB``: which database number tests may flush (default 13).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

# The project is not necessarily pip-installed and the `pytest` script does not put
# the repo root on sys.path; without it `stream` would resolve to tests/stream.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from stream.embedded import (  # noqa: E402
    EmbeddedBroker,
    EmbeddedRedis,
    ExternalBroker,
    consume_all,
    redis_reachable,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
TEST_REDIS_DB = int(os.environ.get("RATEHOUND_TEST_REDIS_DB", "13"))


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker | ExternalBroker]:
    """Return a running broker for the whole session (tansu, or ``KAFKA_BROKER`` if set)."""
    external = os.environ.get("KAFKA_BROKER")
    if external:
        yield ExternalBroker(external)
        return
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def _redis_base_url() -> Iterator[str]:
    # Borrow the shared Redis when it answers; otherwise run a private one so the
    # suite still works on a machine without a Redis service.
    shared = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    if redis_reachable(shared):
        yield shared
        return
    with EmbeddedRedis() as r:
        yield r.url


@pytest.fixture
def redis_url(_redis_base_url: str) -> Iterator[str]:
    """Return a URL to a dedicated Redis database, empty at the start and flushed after the test."""
    url = _with_db(_redis_base_url, TEST_REDIS_DB)
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="session")
def own_redis() -> Iterator[EmbeddedRedis]:
    """Return a private redis-server that tests may kill, pause and restart."""
    with EmbeddedRedis() as r:
        yield r


@pytest.fixture(name="consume_all")
def consume_all_fixture() -> Callable[..., list]:
    """Return :func:`stream.embedded.consume_all` (bootstrap, topic, timeout, min_messages)."""
    return consume_all
