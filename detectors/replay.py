"""Offline replay: a recorded traffic file through the detector, decisions out, no broker, no Redis.

Reads JSON Lines (optionally gzip), decodes in chunks with the same decoder the
workers use, and runs ``Detector`` in file order. A recorded file is trusted
for time (it is in the past by nature), so the future-skew check is off;
lateness still applies.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from detectors.config import DetectorConfig
from detectors.events import EventDecoder, Reject
from detectors.pipeline import Detector
from detectors.policy import Decision

CHUNK_LINES = 5000


def open_events(path: str | Path) -> IO[bytes]:
    p = str(path)
    return gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")  # noqa: SIM115


def line_chunks(f: IO[bytes], size: int = CHUNK_LINES) -> Iterator[bytes]:
    """Lines grouped into JSON arrays, so decoding is one typed pass per chunk."""
    buf: list[bytes] = []
    for line in f:
        line = line.strip()
        if not line:
            continue
        buf.append(line)
        if len(buf) >= size:
            yield b"[" + b",".join(buf) + b"]"
            buf = []
    if buf:
        yield b"[" + b",".join(buf) + b"]"


class ReplayStats:
    """What a replay read, rejected and decided."""

    def __init__(self) -> None:
        self.events = 0
        self.rejects: dict[str, int] = {}
        self.decisions = 0

    def count_rejects(self, rejects: list[Reject]) -> None:
        for r in rejects:
            self.rejects[r.reason] = self.rejects.get(r.reason, 0) + 1


def replay(path: str | Path, cfg: DetectorConfig, stats: ReplayStats | None = None) -> Iterator[Decision]:
    """Decisions for a traffic file, in event-time order of their triggering events."""
    stats = stats or ReplayStats()
    decoder = EventDecoder(max_future_s=cfg.event_time.max_future_s)
    det = Detector(cfg)
    with open_events(path) as f:
        for chunk in line_chunks(f):
            events, rejects = decoder.decode_lines(chunk, now=math.inf)
            stats.events += len(events)
            decisions, late = det.process(events)
            stats.count_rejects(rejects)
            stats.count_rejects(late)
            stats.decisions += len(decisions)
            yield from decisions
