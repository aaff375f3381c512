"""Shared pytest fixtures: the embedded Kafka broker, a private Redis, workers and a topic reader.

The suite starts its own redis-server on a free loopback port (one per session; each test gets a
database emptied for it) and never touches a Redis it did not start. ``KAFKA_BROKER``
(``127.0.0.1:9092`` or ``kafka://...``) makes it use that broker instead of starting tansu.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, settings

# Tests share two cores with a broker, Redis and each other: how fast Hypothesis draws inputs is
# not what they test, so a slow draw (a GC pause, a busy neighbour) must not fail them.
settings.register_profile("ratehound", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ratehound")

# The project is not necessarily pip-installed and the `pytest` script does not put
# the repo root on sys.path; without it `stream` would resolve to tests/stream.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from lab.embedded import (  # noqa: E402
    EmbeddedBroker,
    EmbeddedRedis,
    ExternalBroker,
    RedisStartError,
    consume_all,
)
from lab.workers import WorkerProcess  # noqa: E402


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker | ExternalBroker]:
    """Return a running broker for the whole session (tansu, or ``KAFKA_BROKER`` if set)."""
    external = os.environ.get("KAFKA_BROKER")
    if external:
        yield ExternalBroker(external)
        return
    with EmbeddedBroker() as b:
        yield b


def _private_redis() -> Iterator[EmbeddedRedis]:
    try:
        r = EmbeddedRedis().start()
    except RedisStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="session")
def _session_redis() -> Iterator[EmbeddedRedis]:
    yield from _private_redis()


@pytest.fixture
def redis_url(_session_redis: EmbeddedRedis) -> Iterator[str]:
    """Return a URL to the session's private redis-server, database 0, empty at the start of the test."""
    url = _session_redis.url
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()  # ours alone: nothing else uses this server
        yield url
    finally:
        client.close()


@pytest.fixture(scope="session")
def own_redis() -> Iterator[EmbeddedRedis]:
    """Return a private redis-server that tests may kill, pause and restart."""
    yield from _private_redis()


@pytest.fixture(name="consume_all")
def consume_all_fixture() -> Callable[..., list]:
    """Return :func:`lab.embedded.consume_all` (bootstrap, topic, timeout, min_messages)."""
    return consume_all


_worker_ids = itertools.count()


@pytest.fixture
def start_worker(broker, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``ratehound worker`` subprocesses, each ready to read (stopped at the end of the test)."""
    started: list[WorkerProcess] = []

    def start(redis_url: str, reuse: WorkerProcess | None = None, broker_url: str | None = None,
              timeout: float = 60.0, **kw) -> WorkerProcess:
        """A new worker; with ``reuse``, one that takes over that worker's app id, topics and state;
        with ``broker_url``, on another broker than the session's."""
        app_id = reuse.app_id if reuse is not None else f"rh-test-{os.getpid()}-{next(_worker_ids)}"
        if reuse is not None:
            kw.setdefault("partitions", reuse.partitions)
            kw["topics"] = reuse.topics
            kw["extra_env"] = {**{k: v for k, v in reuse.env.items()
                                  if k.startswith("RATEHOUND_") and k != "RATEHOUND_WEB_PORT"},
                               **kw.get("extra_env", {})}
        w = WorkerProcess(broker_url or broker.url, redis_url, app_id, tmp_path, **kw)
        started.append(w)
        w.start()
        try:
            w.wait_ready(timeout, recovered=True)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None
        return w

    yield start
    for w in started:
        w.stop(timeout=20.0)
