"""Offline replay: a recorded traffic file through the detector, decisions out, no broker, no Redis.

Reads JSON Lines (optionally gzip), decodes in chunks with the same decoder the
workers use, and runs ``Detector`` in file order, in one process or, with the same
result, its account stage in a second one (``split_replay``). A recorded file is in the
past by nature, so time is checked against the detector's own clock: an event
more than a day ahead of it is rejected as ``future_ts``; lateness applies as live.
"""

from __future__ import annotations

import contextlib
import gzip
import math
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO

from backtest.split_replay import SplitDetector
from detectors.config import DetectorConfig
from detectors.events import Event, EventDecoder, Reject, encode_event
from detectors.pipeline import Detector
from detectors.policy import Decision, encode_decision

CHUNK_LINES = 5000
REPLAY_MAX_GAP_S = 86400.0


def open_events(path: str | Path) -> IO[bytes]:
    p = str(path)
    if p.endswith(".gz"):
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return open(p, "rb")  # noqa: SIM115


def line_chunks(f: IO[bytes], size: int = CHUNK_LINES) -> Iterator[list[bytes]]:
    """Non-empty lines in chunks, so decoding is one typed pass per chunk."""
    buf: list[bytes] = []
    for line in f:
        line = line.strip()
        if not line:
            continue
        buf.append(line)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def decode_chunk(decoder: EventDecoder, lines: list[bytes], now: float) -> tuple[list[Event], list[Reject]]:
    """One typed pass over the chunk as a JSON array; if any line is bad, each line on its own,
    so a bad line rejects only itself (and a line like ``7, 8`` cannot pass for two elements)."""
    events, rejects = decoder.decode_lines(b"[" + b",".join(lines) + b"]", now=now)
    if rejects and any(r.reason in ("not_json", "not_object", "schema") for r in rejects):
        events, rejects = [], []
        for line in lines:
            ok, bad = decoder.decode(line, now=now)
            events.extend(ok)
            rejects.extend(bad)
    return events, rejects


class ReplayStats:
    """What a replay read, rejected and decided."""

    def __init__(self) -> None:
        self.events = 0
        self.rejects: dict[str, int] = {}
        self.decisions = 0

    def count_rejects(self, rejects: list[Reject]) -> None:
        for r in rejects:
            self.rejects[r.reason] = self.rejects.get(r.reason, 0) + 1


def decoded_chunks(path: str | Path, cfg: DetectorConfig, stats: ReplayStats) -> Iterator[list[Event]]:
    """The file's valid events, a chunk at a time; what does not decode is counted in ``stats``."""
    decoder = EventDecoder(max_future_s=cfg.event_time.max_future_s, ip_cache_size=cfg.network.ip_cache_size)
    latest = -math.inf  # the latest timestamp handed on: the detector's clock, as its stages will have it
    with open_events(path) as f:
        for chunk in line_chunks(f):
            # Recorded time is trusted up to a day beyond the detector's own clock: a gap in a file is
            # fine, a timestamp from another era is not allowed to make everything after it late.
            now = latest + REPLAY_MAX_GAP_S if latest > -math.inf else math.inf
            events, rejects = decode_chunk(decoder, chunk, now)
            if now == math.inf and events:  # the first chunk: its median time is the reference
                ref = sorted(e.ts for e in events)[len(events) // 2] + REPLAY_MAX_GAP_S
                rejects += [Reject("future_ts", f"ts={e.ts} is a day past the file's start", encode_event(e))
                            for e in events if e.ts > ref]
                events = [e for e in events if e.ts <= ref]
            stats.count_rejects(rejects)
            stats.events += len(events)
            if events:
                latest = max(latest, max(e.ts for e in events))
                yield events


def replay(path: str | Path, cfg: DetectorConfig, stats: ReplayStats | None = None,
           processes: int = 1) -> Generator[Decision, None, None]:
    """Decisions for a traffic file, in event-time order of their triggering events.

    ``processes=2`` runs the account stage in a second process (``SplitDetector``): the same
    decisions in the same order, on two cores."""
    stats = stats or ReplayStats()
    chunks = decoded_chunks(path, cfg, stats)
    if processes == 1:
        det = Detector(cfg)
        results: Iterator[tuple[list[Decision], list[Reject]]] = (det.process(events) for events in chunks)
        yield from _counted(results, stats)
    elif processes == 2:
        with SplitDetector(cfg) as split:
            yield from _counted(split.process_chunks(chunks), stats)
    else:
        raise ValueError(f"processes: 1 or 2 (the detector has two stages), got {processes}")


def _counted(results: Iterator[tuple[list[Decision], list[Reject]]], stats: ReplayStats) -> Iterator[Decision]:
    for decisions, late in results:
        stats.count_rejects(late)
        stats.decisions += len(decisions)
        yield from decisions


def replay_to_file(path: str | Path, cfg: DetectorConfig, out: IO[bytes],
                   stats: ReplayStats | None = None, processes: int = 1) -> list[Decision]:
    """Replay ``path`` and write its decisions to ``out`` as JSON Lines; returns them too."""
    decisions = []
    with contextlib.closing(replay(path, cfg, stats, processes)) as found:  # a failed write stops the child too
        for d in found:
            out.write(encode_decision(d) + b"\n")
            decisions.append(d)
    return decisions
