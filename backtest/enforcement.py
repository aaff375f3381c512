"""What a gateway enforces on each key over time, given a stream of decisions (the contract's semantics).

A decision holds from its ``ts`` plus the pipeline's latency for ``ttl_s``. Where
several hold on one key at once the most restrictive wins: ``block`` (and a
``throttle`` without ``limit_rps``) lets nothing through, a ``throttle`` lets one
request per ``1 / limit_rps`` seconds through. ``allow`` ends whatever holds on its
key at its time (not what starts later); ``review`` only flags the key.
"""

from __future__ import annotations

import heapq
import ipaddress
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import msgspec
import orjson

SCOPES = ("account", "network", "asn", "payment")
ACTIONS = ("throttle", "block", "review", "allow")


class Cause(NamedTuple):
    """The decision behind what is in force: what the scorer's ``explain`` names."""

    ts: float
    scope: str
    key: str
    action: str
    reason: str | None


class _Hold(NamedTuple):
    start: float
    end: float
    limit: float  # 0: nothing passes
    cause: Cause


class InForce:
    """What is in force on one key: pieces of time with the most restrictive limit, and who set each.

    A piece holds strictly after its start and before its end, so the request that
    triggered a decision (its ``ts``, with no latency) always gets through. A
    throttled key remembers when it last let a request pass.

    >>> c = Cause(0.0, "account", "a", "throttle", "account_burst")
    >>> f = InForce([_Hold(10.0, 20.0, 1.0, c)])
    >>> [f.stops(t) for t in (5.0, 10.0, 10.2, 10.5, 11.5, 12.0, 20.0)]
    [None, None, False, True, False, True, None]
    """

    __slots__ = ("starts", "ends", "limits", "since", "causes", "last_pass")

    def __init__(self, holds: list[_Hold]):
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.limits: list[float] = []
        self.since: list[float] = []  # when each entry of causes starts to be the one in force
        self.causes: list[Cause] = []
        self.last_pass: float | None = None
        holds = sorted((h for h in holds if h.end > h.start), key=lambda h: h.start)
        bounds = sorted({b for h in holds for b in (h.start, h.end)})
        heap: list[tuple[float, float, int]] = []  # (limit, -end, index): the most restrictive on top
        i = 0
        for b, nb in pairwise(bounds):
            while i < len(holds) and holds[i].start <= b:
                heapq.heappush(heap, (holds[i].limit, -holds[i].end, i))
                i += 1
            while heap and -heap[0][1] <= b:  # lazily: only the top must still hold
                heapq.heappop(heap)
            if not heap:
                continue
            limit, _, j = heap[0]
            if self.starts and self.ends[-1] == b and self.limits[-1] == limit:
                self.ends[-1] = nb
            else:
                self.starts.append(b)
                self.ends.append(nb)
                self.limits.append(limit)
            if not self.causes or self.causes[-1] is not holds[j].cause:
                self.since.append(b)
                self.causes.append(holds[j].cause)

    def __bool__(self) -> bool:
        return bool(self.starts)

    def stops(self, t: float) -> bool | None:
        """None if nothing is in force at ``t``; else whether a request at ``t`` is stopped."""
        i = bisect_left(self.starts, t) - 1
        if i < 0 or t >= self.ends[i]:
            return None
        limit = self.limits[i]
        if limit <= 0:
            return True
        if self.last_pass is not None and t - self.last_pass < 1.0 / limit:
            return True
        self.last_pass = t
        return False

    def cause_at(self, t: float) -> Cause:
        """The decision in force at ``t`` (call it where ``stops`` said something is)."""
        return self.causes[bisect_right(self.since, t) - 1]


@dataclass
class Enforcement:
    """Every key's ``InForce``, by scope, and what the decisions held besides."""

    by_scope: dict[str, dict[str, InForce]] = field(default_factory=lambda: {s: {} for s in SCOPES})
    review_keys: set[tuple[str, str]] = field(default_factory=set)
    decisions: int = 0
    malformed: int = 0


def _as_dict(record: Any) -> dict[str, Any]:
    if isinstance(record, bytes | str):
        return orjson.loads(record)
    if isinstance(record, msgspec.Struct):  # detectors.policy.Decision
        return msgspec.to_builtins(record)
    return dict(record)


def canonical_network(key: str) -> str:
    """A network key in the form decisions and the scorer compare (``2001:db8:42::/48``).

    >>> canonical_network("2001:DB8:42:0::/48"), canonical_network("203.0.113.9/24")
    ('2001:db8:42::/48', '203.0.113.0/24')
    """
    return str(ipaddress.ip_network(key, strict=False))


def enforced(decisions: Iterable[Any], latency: float = 1.0) -> Enforcement:
    """What the decisions put in force (lines of a decisions file, dicts or ``Decision`` objects).

    A decision that cannot be read (not JSON, a field missing or of the wrong type, an
    unknown scope or action, a network that is not one) is counted as malformed and skipped.
    """
    out = Enforcement()
    holds: dict[tuple[str, str], list[tuple[float, int, _Hold | None]]] = {}
    for record in decisions:
        try:
            d = _as_dict(record)
            scope, key, action = d["scope"], str(d["key"]), d["action"]
            if scope not in SCOPES or action not in ACTIONS:
                raise ValueError(f"scope {scope!r} or action {action!r}")
            ts = float(d["ts"])
            ttl = float(d.get("ttl_s") or 0)
            limit = max(0.0, float(d.get("limit_rps") or 0)) if action == "throttle" else 0.0
            if scope == "network":
                key = canonical_network(key)
            reason = d.get("reason")
        except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
            out.malformed += 1
            continue
        out.decisions += 1
        start = ts + latency
        if action == "review":
            out.review_keys.add((scope, key))
        elif action == "allow":
            holds.setdefault((scope, key), []).append((start, 0, None))
        elif ttl > 0:
            cause = Cause(ts, scope, key, action, None if reason is None else str(reason))
            holds.setdefault((scope, key), []).append((start, 1, _Hold(start, start + ttl, limit, cause)))
    for (scope, key), timeline in holds.items():
        # An allow lifts what holds when it takes effect; a decision taking effect at that same instant stays.
        timeline.sort(key=lambda x: (x[0], x[1]))
        held: list[_Hold] = []
        for start, _, hold in timeline:
            if hold is not None:
                held.append(hold)
            else:
                held = [h._replace(end=min(h.end, start)) for h in held]
        f = InForce(held)
        if f:
            out.by_scope[scope][key] = f
    return out
