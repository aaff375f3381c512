"""The policy: turns rule findings into decisions of the contract's form.

A finding says which rule fired on which (scope, key), with a score and the
evidence. The policy maps the rule to its configured action and TTL, honours
allowlists and shadow mode, and remembers what is in force so the same decision
is not re-emitted on every event: only when nothing is in force, when the new
one is stronger, or when the one in force is about to expire. Decision ids are
stable (scope, key, rule and a TTL-sized window of event time) and expiries are
absolute event times, so reprocessing an event never extends a block.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgspec

from detectors.config import PolicyConfig

ENFORCING = ("throttle", "block")
STRENGTH = {"allow": 0, "review": 1, "throttle": 2, "block": 3}


class Decision(msgspec.Struct, omit_defaults=True, gc=False):
    """One decision (contract fields first, then ratehound's own optional ones)."""

    ts: float
    scope: str
    key: str
    action: str
    ttl_s: float
    reason: str
    score: float
    evidence: dict[str, Any]
    limit_rps: float | None = None
    id: str = ""
    expires_at: float = 0.0
    config_version: str = ""
    shadow: bool = False


def decision_id(scope: str, key: str, rule: str, window: int) -> str:
    """Stable id: the same finding in the same window always gets the same id.

    >>> decision_id("account", "a1", "account_burst", 7) == decision_id("account", "a1", "account_burst", 7)
    True
    """
    h = hashlib.blake2b(f"{scope}\x00{key}\x00{rule}\x00{window}".encode(), digest_size=10)
    return h.hexdigest()


class DecisionLedger:
    """What is in force per (scope, key): says whether a new decision adds anything.

    A decision is news when nothing is in force on its key, when it is stronger, when the one in force
    has less than ``refresh_share`` of its TTL left, or when it holds longer than that one and would end
more than ``refresh_share`` of its TTL later.

    >>> led = DecisionLedger(refresh_share=0.2)
    >>> led.admit("account", "a", "block", ts=0.0, ttl_s=100.0), led.admit("account", "a", "throttle", 1.0, 100.0)
    (True, False)
    >>> led.admit("account", "a", "block", ts=85.0, ttl_s=100.0)   # 15 % left: refresh
    True
    """

    def __init__(self, refresh_share: float = 0.2):
        self.refresh_share = refresh_share
        self.active: dict[tuple[str, str], tuple[int, float, float]] = {}  # strength, taken at, until

    def admit(self, scope: str, key: str, action: str, ts: float, ttl_s: float) -> bool:
        if action == "allow":
            self.active.pop((scope, key), None)
            return True
        if not self.would_admit(scope, key, action, ts, ttl_s):
            return False
        self.active[(scope, key)] = (STRENGTH[action], ts, ts + ttl_s)
        return True

    def would_admit(self, scope: str, key: str, action: str, ts: float, ttl_s: float) -> bool:
        """What ``admit`` would answer, without recording anything."""
        cur = self.active.get((scope, key))
        # A decision taken later in event time (another stage ran ahead) does not hide an earlier finding.
        if cur is not None and cur[1] <= ts:
            cur_strength, taken, cur_until = cur
            remaining = cur_until - ts
            strength = STRENGTH[action]
            # A decision that must hold much longer than the one in force (a campaign found slower than
            # first thought) is news, as is a refresh of one about to end.
            longer = ttl_s > cur_until - taken and ts + ttl_s - cur_until > ttl_s * self.refresh_share
            if remaining > 0 and (
                strength < cur_strength
                or (strength == cur_strength and remaining > ttl_s * self.refresh_share and not longer)
            ):
                return False
        return True

    def expire(self, now: float) -> int:
        stale = [k for k, (_, _, until) in self.active.items() if until < now]
        for k in stale:
            del self.active[k]
        return len(stale)


class Watermark:
    """The latest event time a detector has read: every decision carries it as its ``ts``.

    Read in order, that is the time of the event that triggered the decision; read out of order
    (partitions out of step, a backlog), a decision about an older event carries the later time, since
    that is when the detector could say it. The stages of one detector share one watermark and advance
    it as they read.

    >>> wm = Watermark()
    >>> wm.advance(10.0), wm.advance(4.0), wm.now
    (10.0, 10.0, 10.0)
    """

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = -math.inf

    def advance(self, ts: float) -> float:
        """Read an event of time ``ts``; returns the watermark."""
        if ts > self.now:
            self.now = ts
        return self.now


class Policy:
    """Rule findings in, deduplicated decisions out.

    >>> from detectors.config import PolicyConfig
    >>> p = Policy(PolicyConfig(), version="v1")
    >>> d = p.decide("account", "a1", "campaign", ts=100.0, score=0.9, evidence={})
    >>> d.action, d.ttl_s, d.expires_at
    ('block', 3600.0, 3700.0)
    >>> p.decide("account", "a1", "campaign", ts=101.0, score=0.9, evidence={}) is None
    True
    >>> p = Policy(PolicyConfig(allow_accounts=frozenset({"ok"})), version="v1")
    >>> p.decide("account", "ok", "campaign", ts=1.0, score=1.0, evidence={}) is None
    True
    """

    def __init__(self, cfg: PolicyConfig, version: str = "default", watermark: Watermark | None = None):
        """``watermark``: shared with the other stages of the detector (a policy alone keeps its own,
        advanced by the findings it is given)."""
        self.cfg = cfg
        self.version = version
        self.watermark = watermark if watermark is not None else Watermark()
        self.ledger = DecisionLedger(cfg.refresh_before_expiry_share)

    def reconfigure(self, cfg: PolicyConfig, version: str) -> None:
        """New rules and allowlists; what is in force stays in force."""
        self.cfg = cfg
        self.version = version
        self.ledger.refresh_share = cfg.refresh_before_expiry_share

    def allowlisted(self, scope: str, key: str) -> bool:
        if scope == "account":
            return key in self.cfg.allow_accounts
        if scope == "network":
            return key in self.cfg.allow_networks
        if scope == "asn":
            return key.isdigit() and int(key) in self.cfg.allow_asns
        if scope == "payment":
            return key in self.cfg.allow_payments
        return False

    def would_decide(self, scope: str, key: str, rule: str, ts: float, hold_s: float = 0.0) -> bool:
        """Whether ``decide`` would now say something for this finding: a rule that fires on every
        request of a flagged cluster asks first, and builds its evidence only when the answer is yes.

        >>> from detectors.config import PolicyConfig
        >>> p = Policy(PolicyConfig(), version="v1")
        >>> p.would_decide("account", "a1", "campaign", 100.0)
        True
        >>> _ = p.decide("account", "a1", "campaign", ts=100.0, score=0.9, evidence={})
        >>> p.would_decide("account", "a1", "campaign", 101.0)
        False
        >>> p.would_decide("account", "a1", "no_such_rule", 1.0)   # never silently nothing
        Traceback (most recent call last):
        ...
        KeyError: 'no_such_rule'
        """
        rc = self.cfg.rules[rule]
        if self.allowlisted(scope, key):
            return False
        ts = self.watermark.advance(ts)
        cur = self.ledger.active.get((scope, key))
        if cur is None or cur[1] > ts:  # nothing in force: the common answer, without another call
            return True
        ttl = rc.ttl_s if hold_s <= rc.ttl_s else hold_s
        return self.ledger.would_admit(scope, key, "review" if rc.shadow else rc.action, ts, ttl)

    def decide(self, scope: str, key: str, rule: str, ts: float, score: float,
               evidence: dict[str, Any], hold_s: float = 0.0) -> Decision | None:
        """The decision to publish for this finding, or None when nothing new is to be said. Its ``ts`` is
        the watermark: the finding's own time or, read out of order, the later time already read."""
        rc = self.cfg.rules[rule]
        if self.allowlisted(scope, key):
            return None
        ts = self.watermark.advance(ts)
        action = "review" if rc.shadow else rc.action
        ttl = rc.ttl_s if hold_s <= rc.ttl_s else hold_s
        if not self.ledger.admit(scope, key, action, ts, ttl):
            return None
        return Decision(
            ts=ts, scope=scope, key=key, action=action, ttl_s=ttl, reason=rule, score=round(score, 4),
            evidence=evidence, limit_rps=rc.limit_rps if action == "throttle" else None,
            id=decision_id(scope, key, rule, int(ts // rc.ttl_s)), expires_at=ts + ttl,
            config_version=self.version, shadow=rc.shadow,
        )

    def allow(self, scope: str, key: str, ts: float, ttl_s: float, reason: str) -> Decision:
        """Lift whatever is in force on a key (a manual override)."""
        self.ledger.admit(scope, key, "allow", ts, ttl_s)
        return Decision(ts=ts, scope=scope, key=key, action="allow", ttl_s=ttl_s, reason=reason, score=0.0,
                        evidence={}, id=decision_id(scope, key, "allow", int(ts)), expires_at=ts + ttl_s,
                        config_version=self.version)

    def expire(self, now: float) -> int:
        return self.ledger.expire(now)


def encode_decision(d: Decision) -> bytes:
    return msgspec.json.encode(d)
