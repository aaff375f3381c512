"""Hand-built event streams for the detector's tests: a few people as background, and the shapes of
the attacks and honest crowds the rules are about."""

from __future__ import annotations

import random

from detectors.config import DetectorConfig
from detectors.events import Event
from detectors.pipeline import Detector
from detectors.policy import Decision

T0 = 1_790_000_000.0
DAY = 86400.0
OLD = T0 - 400 * DAY
ENFORCING = {"throttle", "block"}


class Stream:
    """Builds a hand-made event stream; events are sorted by ts on the way out."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, ts: float, account: str, ip: str, **kw) -> None:
        kw.setdefault("input_tokens", 200)
        kw.setdefault("output_tokens", 300)
        self.events.append(Event(event_id=f"ev{len(self.events)}", ts=ts, account_id=account, ip=ip, **kw))

    def every(
        self,
        account: str,
        ip: str,
        start: float,
        end: float,
        period: float,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        **kw,
    ) -> None:
        t = start
        while t < end:
            self.add(t, account, ip, **kw)
            t += period + (rng.uniform(-jitter, jitter) if rng else 0.0)

    def background(self, start: float, end: float, people: int = 6) -> None:
        """A few ordinary people, so the detector has been watching from `start`."""
        rng = random.Random(99)
        for i in range(people):
            self.every(
                f"person{i}",
                f"192.0.2.{10 + i}",
                start + i,
                end,
                45.0,
                jitter=20.0,
                rng=rng,
                account_created_ts=OLD - i * DAY,
            )

    def sorted(self) -> list[Event]:
        return sorted(self.events, key=lambda e: e.ts)


def run(events: list[Event], cfg: DetectorConfig | None = None) -> tuple[list[Decision], list]:
    return Detector(cfg or DetectorConfig()).process(events)


def on(decisions: list[Decision], prefix: str) -> list[Decision]:
    return [d for d in decisions if d.scope == "account" and d.key.startswith(prefix)]


def assert_sorted(decisions: list[Decision]) -> None:
    assert [d.ts for d in decisions] == sorted(d.ts for d in decisions)


def burst_stream(onset: float = T0 + 1200.0) -> Stream:
    s = Stream()
    s.background(T0, onset + 120.0)
    s.every("quiet", "198.51.100.7", T0 + 5.0, onset, 60.0, account_created_ts=OLD)
    s.every("quiet", "198.51.100.7", onset, onset + 60.0, 1 / 20, account_created_ts=OLD)
    return s


def campaign_stream(n: int = 30) -> Stream:
    rng = random.Random(5)
    s = Stream()
    s.background(T0, T0 + 900.0)
    for i in range(n):
        start = T0 + 60.0 + i * 7.0
        s.every(
            f"young{i}",
            f"10.{i}.{i}.{i + 1}",
            start,
            T0 + 900.0,
            20.0,
            jitter=5.0,
            rng=rng,
            account_created_ts=T0 - 3600.0,
            payment_fp="pay_shared",
            input_tokens=40,
            output_tokens=2000,
            user_agent=f"python-requests/2.{i}",
        )
    return s


def hackathon_stream() -> Stream:
    rng = random.Random(8)
    s = Stream()
    s.background(T0, T0 + 1800.0)
    for i in range(25):
        s.every(
            f"hacker{i}",
            "198.18.0.20",
            T0 + 300.0 + i * 3,
            T0 + 1800.0,
            40.0,
            jitter=15.0,
            rng=rng,
            account_created_ts=T0 - 1800.0 + i,
            prompt_fp="0123456789abcdef",
            user_agent="tutorial-sdk/1.0",
            input_tokens=300,
            output_tokens=350,
        )
    return s


def stolen(s: Stream, rng: random.Random, account: str, start: float, end: float, created: float,
           servers: tuple[str, ...] = ("203.0.113.10", "203.0.113.11", "203.0.113.12"), ua: str = "resale-tool/1",
           rate: float = 1.0) -> None:
    """A stolen key driven by the thief: requests spread over the thief's few servers, one tool's client."""
    t = start
    while t < end:
        s.add(t, account, rng.choice(servers), account_created_ts=created, user_agent=ua, input_tokens=100,
              output_tokens=400)
        t += rng.uniform(0.8, 1.2) / rate


def compromised_stream(onset: float = T0 + 900.0, keys: int = 15) -> Stream:
    """Old, quiet accounts whose keys one thief drives from a few servers on one network."""
    rng = random.Random(4)
    s = Stream()
    s.background(T0, onset + 400.0, people=10)
    for i in range(keys):
        stolen(s, rng, f"victim{i}", onset + rng.uniform(0, 30), onset + 300.0, OLD + i * DAY)
    return s
