"""Bursts: an account's short-term rate far above its own baseline.

A stolen key driven hard, or a script gone wild, shows as a 2 s, 10 s or since-waking-up rate many
times the account's long-run rate (bias-corrected for how long it was watched) or its earlier peak.
The baseline is the account's own, so a heavy customer's usual pace is not a burst; a quiet account
jumping to many requests a second is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.account_stage import AccountView


class BurstThresholds(Strict):
    """When an account's short-term rate is a burst against its own baseline."""

    fast_rps: float = Field(12.0, gt=0, description="2-second rate that is a burst at once")
    episode_rps: float = Field(9.0, gt=0, description="rate since waking up that is a burst")
    episode_min_events: int = Field(30, ge=5, description="requests since waking up before that counts")
    min_rps: float = Field(8.5, gt=0, description="10-second rate that is a burst when sustained")
    ratio: float = Field(8.0, gt=1, description="short rate over the account's own baseline")
    baseline_floor_rps: float = Field(0.1, gt=0)
    min_observed_s: float = Field(300.0, ge=0, description="how long an account must have been watched")
    block_ratio: float = Field(30.0, gt=1, description="beyond this ratio a burst is blocked, not throttled")
    rate_headroom: dict[str, float] = Field(
        default_factory=dict,
        description="per-account or per-org_id (tier) factor on every burst threshold, e.g. {acct_big: 5}",
    )

    @field_validator("rate_headroom")
    @classmethod
    def _positive_headroom(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if not f > 0}
        if bad:
            raise ValueError(f"headroom factors must be > 0, got {bad}")
        return v


def measure(v: AccountView, t: BurstThresholds) -> tuple[float, float, float, float, float] | None:
    """(rate now, baseline, ratio, observed s, episode floor) of a burst in progress, or None.

    Three windows: 2 s catches a steep jump at once, 10 s a sustained one that noise never fakes, and
    the exact rate since a quiet account woke up, once enough requests are in. Every floor scales with
    the account's or its organisation's headroom (a contract's tier)."""
    s = v.s
    re = v.rate_episode if s.ep_n >= t.episode_min_events else 0.0
    headroom = t.rate_headroom
    k = (headroom.get(v.account) or (headroom.get(v.ev.org_id) if v.ev.org_id else None) or 1.0) if headroom else 1.0
    fast_rps, min_rps, episode_rps = t.fast_rps * k, t.min_rps * k, t.episode_rps * k
    rs, r10 = v.rate_2s, v.rate_10s
    if not (rs >= fast_rps or r10 >= min_rps or re >= episode_rps):
        return None
    created = s.created
    observed = v.ts - max(v.start_ts, created if created == created else v.start_ts)
    if observed < t.min_observed_s:
        return None
    base = max(t.baseline_floor_rps, s.baseline(observed))
    rate_now = max(rs if rs >= fast_rps else 0.0, r10, re if re >= episode_rps else 0.0)
    ratio = rate_now / base
    if ratio < t.ratio:
        return None
    return rate_now, base, ratio, observed, episode_rps


class _Burst(Rule[BurstThresholds]):
    scope = "account"
    stage = "account"
    section = "burst"
    Thresholds = BurstThresholds

    def _finding(self, v: AccountView, extreme: bool) -> Finding | None:
        m = measure(v, self.t)
        if m is None or (m[2] >= self.t.block_ratio and m[0] >= m[4]) != extreme:
            return None
        return Finding(v.account, min(1.0, m[2] / (2 * self.t.block_ratio)))

    def evidence(self, v: AccountView) -> dict[str, Any]:
        m = measure(v, self.t)
        assert m is not None
        rate_now, base, ratio, observed, _ = m
        return {"rate_rps": round(rate_now, 2), "baseline_rps": round(base, 3), "ratio": round(ratio, 1),
                "observed_s": round(observed)}


class AccountBurstExtreme(_Burst):
    """A burst beyond ``block_ratio`` times the baseline, at least ``episode_rps``: blocked.

    >>> from detectors.events import Event
    >>> from detectors.tiny import account_stage
    >>> stage, out = account_stage()
    >>> _ = stage.process_one(Event(event_id="q", ts=0.0, account_id="other", ip="192.0.2.1"), out, [])
    >>> for i in range(200):                              # 20 requests a second from a quiet account
    ...     _ = stage.process_one(Event(event_id=f"e{i}", ts=1000.0 + i / 20, account_id="old",
    ...                                 ip="198.51.100.7", account_created_ts=0.0), out, [])
    >>> [(d.key, d.reason, d.action) for d in out]
    [('old', 'account_burst_extreme', 'block')]
    """

    name = "account_burst_extreme"
    order = 10
    default = RuleConfig(action="block", ttl_s=900.0)
    summary = ("a burst (2 s, 10 s or since-waking-up rate) beyond `block_ratio` times the account's own "
               "baseline (its long-run rate, bias-corrected for how long it was watched, or its earlier peak)")

    def find(self, v: AccountView) -> Finding | None:
        return self._finding(v, extreme=True)


class AccountBurst(_Burst):
    """A burst over ``ratio`` times the account's own baseline, short of extreme: throttled.

    >>> from detectors.events import Event
    >>> from detectors.tiny import account_stage
    >>> stage, out = account_stage()
    >>> for i in range(600):                              # an account's usual 0.5/s for 20 minutes
    ...     _ = stage.process_one(Event(event_id=f"u{i}", ts=i * 2.0, account_id="a", ip="198.51.100.7",
    ...                                 account_created_ts=0.0), out, [])
    >>> for i in range(300):                  # a pause, then 10/s for 30 s: 20 times its baseline
    ...     _ = stage.process_one(Event(event_id=f"b{i}", ts=1240.0 + i / 10, account_id="a",
    ...                                 ip="198.51.100.7", account_created_ts=0.0), out, [])
    >>> [(d.key, d.reason, d.action) for d in out]
    [('a', 'account_burst', 'throttle')]
    """

    name = "account_burst"
    order = 11
    default = RuleConfig(action="throttle", ttl_s=600.0, limit_rps=0.2)
    summary = "the same, over `ratio` times the baseline but short of extreme"

    def find(self, v: AccountView) -> Finding | None:
        return self._finding(v, extreme=False)
