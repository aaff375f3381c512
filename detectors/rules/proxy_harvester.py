"""Proxy harvesters: a fresh account harvesting long answers through rotating exits, for review.

Distillation accounts ask for long answers to short prompts and hop between a proxy service's exits;
so do new people on a VPN or a mobile network who like long answers. Every part of this is a trait of
one account with honest holders, so it is never enforced on its own: it flags the account for a
person, and the campaign rule decides from what the account shares with others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.account_stage import AccountView


class ProxyThresholds(Strict):
    """Young accounts harvesting through rotating exits, without any shared fingerprint."""

    max_age_s: float = Field(86400.0, gt=0, description="only accounts this fresh: campaigns use new ones")
    min_harvest_ratio: float = Field(2.5, gt=0, description="output/input tokens, higher than the cohort's")
    min_events: int = Field(4, ge=2)
    min_networks: int = Field(3, ge=2)
    min_switch_share: float = Field(0.6, ge=0, le=1, description="share of requests from another network")


class ProxyHarvester(Rule[ProxyThresholds]):
    """An account under ``max_age_s`` with a high output/input ratio, switching networks most requests.

    >>> from detectors.events import Event
    >>> from detectors.tiny import account_stage
    >>> stage, out = account_stage()
    >>> for i in range(6):                    # a new account, a new exit each time, long answers
    ...     _ = stage.process_one(Event(event_id=f"e{i}", ts=100.0 + 10 * i, account_id="new",
    ...                                 ip=f"203.0.{i}.9", account_created_ts=0.0, input_tokens=20,
    ...                                 output_tokens=900), out, [])
    >>> [(d.key, d.reason, d.action) for d in out]
    [('new', 'proxy_harvester', 'review')]
    """

    name = "proxy_harvester"
    scope = "account"
    stage = "account"
    order = 20
    section = "proxy"
    Thresholds = ProxyThresholds
    default = RuleConfig(action="review", ttl_s=3600.0)
    summary = ("uncertain: an account under a day old harvesting long answers (output/input tokens >= 2.5) "
               "through rotating exits (never enforced: newcomers on VPNs do the same)")

    def find(self, v: AccountView) -> Finding | None:
        t, s = self.t, v.s
        if (v.age < t.max_age_s and s.n >= t.min_events and v.harvest_ratio >= t.min_harvest_ratio
                and s.distinct_networks() >= t.min_networks and s.switch_share() >= t.min_switch_share):
            return Finding(v.account, min(1.0, v.harvest_ratio / 5))
        return None

    def evidence(self, v: AccountView) -> dict[str, Any]:
        s = v.s
        return {"harvest_ratio": round(v.harvest_ratio, 2), "networks": s.distinct_networks(),
                "switch_share": round(s.switch_share(), 2), "age_s": round(v.age), "events": s.n}
