"""The detector on two cores for replay: the account stage in a child process, the rest here.

``Detector``'s stages share nothing but observations (each has its own policy, and one ledger of what
is published dedupes their decisions), as a worker's stages meet only on the by-group topic. So a
replay can run them side by side: while the child runs the account stage on one chunk, this process
decodes the next and runs the population and group stages on what the child returned for the one
before (the population model here: it evens the two processes' work). Each decision and feature
vector carries the index of the observation its event led to, so all are put back in event order and
pass the same ledger: the output is ``Detector``'s, decision for decision, in the same order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import signal
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from detectors.account_stage import AccountStage
from detectors.config import DetectorConfig
from detectors.events import Event, Reject
from detectors.group_stage import GroupStage
from detectors.observation import Observation
from detectors.pipeline import publish
from detectors.policy import Decision, DecisionLedger, Policy, Watermark
from detectors.population import FEATURES
from detectors.population_stage import PopulationStage
from detectors.routing import GroupRouter

IN_FLIGHT = 2  # chunks handed to the child and not yet back: one in its hands, one waiting


class ToScore(msgspec.Struct, array_like=True, gc=False):
    """An account's feature vector for the population stage, with the index of its event's observation."""

    at: int
    account: str
    ts: float
    x: list[float]  # the values of ``features``, in FEATURES order


class AccountBatch(msgspec.Struct, array_like=True, gc=False):
    """What the account stage made of one chunk of events.

    ``at[i]`` is the index in ``observations`` of the observation that the event behind
    ``decisions[i]`` led to: its account decisions come first, then its population score, then that
    observation's group decisions.
    """

    observations: list[Observation]
    decisions: list[Decision]
    at: list[int]
    to_score: list[ToScore]
    rejects: list[Reject]
    error: str = ""


def account_batch(stage: AccountStage, events: Iterable[Event]) -> AccountBatch:
    """One chunk through the account stage, each decision tagged with its place among the observations.

    >>> from detectors.config import DetectorConfig
    >>> cfg = DetectorConfig()
    >>> stage = AccountStage(cfg, Policy(cfg.policy), score_population=False)
    >>> evs = [Event(event_id=f"e{i}", ts=1000.0 + i / 20, account_id="old", ip="198.51.100.7",
    ...              account_created_ts=0.0) for i in range(200)]
    >>> b = account_batch(stage, [Event(event_id="q", ts=1.0, account_id="other", ip="192.0.2.1")] + evs)
    >>> len(b.observations), [(d.reason, b.observations[i].ts == d.ts) for d, i in zip(b.decisions, b.at)]
    (201, [('account_burst_extreme', True)])
    """
    obs: list[Observation] = []
    decisions: list[Decision] = []
    at: list[int] = []
    to_score: list[ToScore] = []
    rejects: list[Reject] = []
    one, pending = stage.process_one, stage.to_score
    for ev in events:
        n = len(decisions)
        o = one(ev, decisions, rejects)
        if len(decisions) > n:
            at.extend([len(obs)] * (len(decisions) - n))
        if pending:
            to_score.extend(ToScore(len(obs), a, ts, list(x.values())) for a, ts, x in pending)
            pending.clear()
        if o is not None:
            obs.append(o)
    return AccountBatch(obs, decisions, at, to_score, rejects)


def run_account_stage(conn: Connection, cfg: DetectorConfig) -> None:
    """The child process: msgpack chunks of event rows in, ``AccountBatch`` out, until an empty message."""
    # A Ctrl-C reaches every process of the terminal's group: the parent is the one to act on it
    # (it stops this process on its way out), so the child carries on rather than dying mid-chunk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stage = AccountStage(cfg, Policy(cfg.policy, version=cfg.version), score_population=False)
    rows = msgspec.msgpack.Decoder(list[tuple]).decode
    encode = msgspec.msgpack.Encoder().encode
    try:
        while payload := conn.recv_bytes():
            try:
                batch = account_batch(stage, [Event(*row) for row in rows(payload)])
            except Exception:  # noqa: BLE001 - said to the parent, which raises it as its own error
                conn.send_bytes(encode(AccountBatch([], [], [], [], [], error=traceback.format_exc())))
                return
            conn.send_bytes(encode(batch))
    except (EOFError, BrokenPipeError):
        return  # the parent went away: nothing left to answer
    finally:
        conn.close()


class SplitReplayError(RuntimeError):
    """The account stage's process failed or died; the message says how."""


class SplitDetector:
    """``Detector`` over two processes, for replay: chunks of events in, (decisions, late rejects) out.

    Use it as a context manager: it starts the child on entry and stops it on exit.
    """

    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg
        # The child's account stage keeps its own watermark; the stages here share one, advanced by the
        # observations in event order: the times a single process has read at each decision.
        wm = Watermark()
        self.population = PopulationStage(cfg, Policy(cfg.policy, cfg.version, wm))
        self.groups = GroupStage(cfg, Policy(cfg.policy, cfg.version, wm))
        self.router = GroupRouter(cfg.cluster, partitions=1)
        self.published = DecisionLedger(cfg.policy.refresh_before_expiry_share)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(AccountBatch).decode
        self._outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=IN_FLIGHT)
        self._send_error: BaseException | None = None
        self._conn: Connection | None = None
        self._child: Any = None
        self._sender: threading.Thread | None = None

    def __enter__(self) -> SplitDetector:
        # fork: the child starts with the detector's modules already imported (River alone takes
        # seconds to import); it runs only this module's pure-Python loop, so no lock of another
        # thread matters to it.
        ctx = multiprocessing.get_context("fork")
        here, there = ctx.Pipe(duplex=True)
        self._child = ctx.Process(target=run_account_stage, args=(there, self.cfg), daemon=True,
                                  name="ratehound-replay-accounts")
        self._child.start()
        there.close()
        self._conn = here
        # A sending thread: a chunk (about a megabyte) goes out while this thread reads the child's
        # answer for the chunk before; both in one thread would wait on each other's full pipe.
        self._sender = threading.Thread(target=self._send_loop, daemon=True, name="ratehound-replay-send")
        self._sender.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Ask the child to stop, reading what it still sends meanwhile (a consumer that stopped early
        # leaves answers in flight, and a child blocked on a full pipe would never read the request).
        if self._child is not None and self._conn is not None:
            asked = False
            deadline = time.monotonic() + 10.0
            while self._child.is_alive() and time.monotonic() < deadline:
                if not asked:
                    try:
                        self._outbox.put_nowait(None)
                        asked = True
                    except queue.Full:
                        pass
                try:
                    if self._conn.poll(0.05):
                        self._conn.recv_bytes()
                except (EOFError, OSError):
                    break
            self._child.join(timeout=1.0)
            if self._child.is_alive():
                self._child.terminate()
                self._child.join()
        if self._sender is not None:
            with contextlib.suppress(queue.Full):
                self._outbox.put_nowait(None)  # a sender still waiting for work: done
            self._sender.join(timeout=1.0)
        if self._conn is not None:
            self._conn.close()

    @property
    def child_pid(self) -> int | None:
        """The account stage's process, once started."""
        return self._child.pid if self._child is not None else None

    def process_chunks(self, chunks: Iterable[list[Event]]) -> Iterator[tuple[list[Decision], list[Reject]]]:
        """Each chunk's published decisions and late rejects, in chunk order."""
        in_flight = 0
        astuple = msgspec.structs.astuple
        for events in chunks:
            # As rows, built back into events by position: the events were validated once, on decoding
            # here, and a typed decode in the child would check every field's constraints again.
            self._put(self._encode([astuple(e) for e in events]))
            in_flight += 1
            if in_flight == IN_FLIGHT:
                in_flight -= 1
                yield self._collect()
        for _ in range(in_flight):
            yield self._collect()

    def _put(self, payload: bytes) -> None:
        while True:
            try:
                self._outbox.put(payload, timeout=0.5)
                return
            except queue.Full:
                if self._sender is None or not self._sender.is_alive() or not self._child.is_alive():
                    raise SplitReplayError(self._ended()) from None

    def _ended(self) -> str:
        code = self._child.exitcode if self._child is not None else None
        return (f"replay's account-stage process ended (exit code {code})"
                + (f" after a send failed: {self._send_error!r}" if self._send_error else ""))

    def _collect(self) -> tuple[list[Decision], list[Reject]]:
        assert self._conn is not None, "use SplitDetector as a context manager"
        try:
            batch = self._decode(self._conn.recv_bytes())
        except EOFError:
            raise SplitReplayError(self._ended()) from None
        if batch.error:
            raise SplitReplayError(f"replay's account stage failed:\n{batch.error}")
        decisions: list[Decision] = []
        own, at, to_score = batch.decisions, batch.at, batch.to_score
        i, n = 0, len(own)
        k, m = 0, len(to_score)
        groups_one, groups, population_one = self.router.visit_all_here, self.groups, self.population.process_one
        advance = self.groups.policy.watermark.advance
        for j, o in enumerate(batch.observations):
            advance(o.ts)  # the time one process has read once its account stage took this event
            while i < n and at[i] == j:
                decisions.append(own[i])
                i += 1
            while k < m and to_score[k].at == j:
                t = to_score[k]
                population_one(t.account, t.ts, dict(zip(FEATURES, t.x, strict=True)), decisions)
                k += 1
            groups_one(groups, o, decisions)
        decisions.extend(own[i:])
        return publish(self.published, decisions), batch.rejects

    def _send_loop(self) -> None:
        assert self._conn is not None
        while True:
            payload = self._outbox.get()
            try:
                self._conn.send_bytes(payload or b"")
            except (OSError, ValueError) as exc:  # the child died: _collect reports it
                self._send_error = exc
                return
            if payload is None:
                return
