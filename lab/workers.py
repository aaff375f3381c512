"""``ratehound worker`` subprocesses for the harness and the tests: the one place that starts them.

Each worker gets an app id, its own topic names (``<app id>.requests`` ...), a free web port
and a log file; the caller reads its ``/metrics`` and ``/healthz`` and stops it with a
signal. Used by the bench, the soak, the demo and the integration tests alike.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import orjson

from lab.embedded import free_port
from stream.settings import Settings
from stream.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
TOPIC_KINDS = ("requests", "dlq", "by_account", "by_group", "decisions")


def app_topics(app_id: str) -> dict[str, str]:
    """Topic names of one app id, by kind: its own, so runs on one broker never mix."""
    return {k: f"{app_id}.{k}" for k in TOPIC_KINDS}


def topic_settings(topics: Mapping[str, str]) -> dict[str, str]:
    """``Settings`` keyword arguments for topic names by kind."""
    return {f"topic_{k}": v for k, v in topics.items()}


def create_app_topics(broker_url: str, app_id: str, partitions: int, topics: Mapping[str, str]) -> None:
    """Create an app id's topics up front, as ``ratehound worker`` would."""
    ensure_topics(Settings(kafka_broker=broker_url, app_id=app_id, partitions=partitions, **topic_settings(topics)))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, its reaped children and its live descendants (0 once gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, list[str]]] = {}  # pid -> (parent, fields after the command name)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), fields)
    mine, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in stats and p not in mine:
            mine.add(p)
            todo.extend(c for c, (parent, _) in stats.items() if parent == p)
    # fields[11:15]: utime, stime, cutime, cstime (proc(5) fields 14-17, after pid and comm)
    return sum(int(x) for p in mine for x in stats[p][1][11:15]) / tick


class WorkerProcess:
    """One ``ratehound worker`` subprocess, its environment, log, metrics and health."""

    def __init__(self, broker_url: str, redis_url: str, app_id: str, log_dir: Path, partitions: int = 2,
                 topics: Mapping[str, str] | None = None, config: str | None = None,
                 extra_env: Mapping[str, str] | None = None, cpu: int | None = None, web_port: int | None = None,
                 log_path: Path | None = None):
        self.app_id = app_id
        self.partitions = partitions
        self.topics = dict(topics or app_topics(app_id))
        self.web_port = web_port or free_port()
        self.env = dict(os.environ, KAFKA_BROKER=broker_url, REDIS_URL=redis_url, RATEHOUND_APP_ID=app_id,
                        RATEHOUND_WEB_PORT=str(self.web_port), RATEHOUND_PARTITIONS=str(partitions),
                        RATEHOUND_DATA_DIR=str(log_dir / f"{app_id}-{self.web_port}"),
                        **{f"RATEHOUND_TOPIC_{k.upper()}": v for k, v in self.topics.items()})
        if config:
            self.env["RATEHOUND_CONFIG"] = config
        self.env.update(extra_env or {})
        self.cpu = cpu
        self.log_path = log_path or log_dir / f"{app_id}-{self.web_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"]
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            cmd = ["taskset", "-c", str(self.cpu), *cmd]
        with open(self.log_path, "ab") as log:  # the child holds its own descriptor
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT)
        self.started = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def poll(self) -> int | None:
        """Its exit code once it has exited, else None."""
        assert self.proc is not None
        return self.proc.poll()

    def log_text(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 90.0, recovered: bool = False) -> float:
        """Seconds from start until ``/metrics`` answers (and, with ``recovered``, Faust has recovered its
        tables: its agents are running). Raises, with the log's tail, if the worker exits or is late."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log_text()}")
            if self.metrics_text(quiet=True) and (
                    not recovered or "[^---Recovery]: Worker ready" in self.log_text(tail=1 << 30)):
                return time.monotonic() - self.started
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout:g} s: {self.log_text()}")

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=2) as r:
            return r.read()

    def metrics_text(self, quiet: bool = False) -> str:
        try:
            return self._get("/metrics").decode()
        except OSError:
            if quiet:
                return ""
            raise

    def metrics(self) -> dict[str, float]:
        """Every sample on ``/metrics`` by its name and labels as written there (empty if it does not answer)."""
        out = {}
        for line in self.metrics_text(quiet=True).splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on ``/metrics`` (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return self.metrics().get(f"{name}{{{want}}}" if want else name, 0.0)

    def processed(self) -> float:
        """Events judged: processed, duplicate or rejected."""
        m = self.metrics()
        return sum(m.get(f'ratehound_events_total{{outcome="{o}"}}', 0.0) for o in ("processed", "duplicate", "rejected"))

    def reading(self) -> dict[str, list[int]]:
        """Per input topic, the partitions its consumer groups have assigned to it (from ``/healthz``)."""
        try:
            return orjson.loads(self._get("/healthz")).get("reading", {})
        except OSError:
            return {}

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker and its children (live or reaped), from ``/proc``: the
        measure of its work on a machine whose cores it shares with the broker."""
        return process_cpu_seconds(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the worker and wait for it (killed after ``timeout``); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
