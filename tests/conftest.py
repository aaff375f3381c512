"""Shared pytest fixtures: the embedded Kafka broker, a private Redis, workers and a topic reader.

The suite starts its own redis-server on a free loopback port (one per session; each test gets a
database emptied for it) and never touches a Redis it did not start. ``KAFKA_BROKER``
(``127.0.0.1:9092`` or ``kafka://...``) makes it use that broker instead of starting tansu.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.request
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


class RunningWorker:
    """A ``ratehound worker`` subprocess on its own app id, topics and web port."""

    def __init__(self, broker_url: str, redis_url: str, tmp: Path, partitions: int = 2,
                 config: str | None = None, extra_env: dict[str, str] | None = None):
        from lab.embedded import free_port

        self.app_id = f"rh-test-{os.getpid()}-{next(_worker_ids)}"
        self.web_port = free_port()
        self.partitions = partitions
        self.topics = {k: f"{self.app_id}.{k}" for k in ("requests", "dlq", "by_account", "by_group", "decisions")}
        self.env = dict(os.environ, KAFKA_BROKER=broker_url, REDIS_URL=redis_url, RATEHOUND_APP_ID=self.app_id,
                        RATEHOUND_WEB_PORT=str(self.web_port), RATEHOUND_PARTITIONS=str(partitions),
                        RATEHOUND_DATA_DIR=str(tmp / self.app_id), RATEHOUND_SNAPSHOT_EVERY_S="1",
                        **{f"RATEHOUND_TOPIC_{k.upper()}": v for k, v in self.topics.items()})
        if config:
            self.env["RATEHOUND_CONFIG"] = config
        self.env.update(extra_env or {})
        self.log_path = tmp / f"{self.app_id}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> RunningWorker:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited: {self.log_path.read_text()[-3000:]}"
            if "ratehound_events_total" in self.metrics_text(quiet=True):
                # the web page is up; give the consumer group a moment to be assigned
                if "[^---Recovery]: Worker ready" in self.log_path.read_text(errors="replace"):
                    return self
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def reading(self) -> dict[str, list[int]]:
        """Per input topic, the partitions its consumer groups have assigned to it (from /healthz)."""
        import orjson

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/healthz", timeout=2) as r:
                return orjson.loads(r.read()).get("reading", {})
        except OSError:
            return {}

    def metrics_text(self, quiet: bool = False) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            if quiet:
                return ""
            raise

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        key = f"{name}{{{want}}}" if want else name
        for line in self.metrics_text().splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


_worker_ids = itertools.count()


@pytest.fixture
def start_worker(broker, tmp_path) -> Iterator[Callable[..., RunningWorker]]:
    """Start ``ratehound worker`` subprocesses (stopped at the end of the test)."""
    started: list[RunningWorker] = []

    def start(redis_url: str, reuse: RunningWorker | None = None, broker_url: str | None = None,
              **kw) -> RunningWorker:
        """A new worker; with ``reuse``, one that takes over that worker's app id, topics and state;
        with ``broker_url``, on another broker than the session's."""
        w = RunningWorker(broker_url or broker.url, redis_url, tmp_path, **kw)
        if reuse is not None:
            w.app_id, w.topics = reuse.app_id, reuse.topics
            w.env.update({k: v for k, v in reuse.env.items() if k.startswith("RATEHOUND_") and k != "RATEHOUND_WEB_PORT"})
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()
