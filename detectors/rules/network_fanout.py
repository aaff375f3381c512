"""Awakened-key fan-out: many old, quiet accounts waking up together on one network (stolen keys).

No single account is remarkable; the network is: several awakened, busy accounts at once, where a
corporate NAT has hundreds of people at human pace and a batch job is alone. The accounts are blocked;
the network itself only when its traffic is dominated by them (honest people share networks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.group_stage import NetworkView


class FanoutThresholds(Strict):
    """How many awakened accounts on one network make a fan-out, and when the network itself is taken."""

    min_accounts: int = Field(5, ge=1, description="awakened accounts on one network")
    takeover_share: float = Field(0.9, gt=0, le=1, description="share of a network's events from flagged accounts")
    takeover_min_accounts: int = Field(10, ge=1)
    takeover_hold_s: float = Field(900.0, gt=0, description="a taken-over network's state is kept this long")


class _Fanout(Rule[FanoutThresholds]):
    stage = "network"
    section = "fanout"
    Thresholds = FanoutThresholds

    def evidence(self, v: NetworkView) -> dict[str, Any]:
        ev = v.ns.evidence(v.o.ts, v.window_s)
        ev["account_rps"] = round(v.o.awakened_rps, 2)
        return ev


class NetworkFanout(_Fanout):
    """An awakened account on a network where ``min_accounts`` awakened within the window.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(6):                    # six old accounts, each suddenly at 1 request a second
    ...     o = observation(10.0 + i, f"k{i}", awakened_rps=1.0)
    ...     _ = stage.observe_networks(o, [o.net], out)
    >>> [(d.key, d.reason) for d in out]
    [('k4', 'network_fanout'), ('k5', 'network_fanout')]
    """

    name = "network_fanout"
    scope = "account"
    order = 10
    default = RuleConfig(action="block", ttl_s=1800.0)
    summary = ("an old account that woke up far above its own baseline, on a network where several others "
               "woke up at once (stolen keys)")

    def find(self, v: NetworkView) -> Finding | None:
        n = v.awakened
        if n < self.t.min_accounts:
            return None
        return Finding(v.o.account, min(1.0, n / (4 * self.t.min_accounts)))


class NetworkTakeover(_Fanout):
    """The network itself, once ``takeover_min_accounts`` awakened there and they carry most of its traffic.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(10):                   # ten stolen keys, and nothing else on the network
    ...     o = observation(10.0 + i, f"k{i}", awakened_rps=1.0)
    ...     _ = stage.observe_networks(o, [o.net], out)
    >>> [(d.scope, d.key) for d in out if d.reason == "network_takeover"]
    [('network', '198.51.100.0/24')]
    """

    name = "network_takeover"
    scope = "network"
    order = 11
    default = RuleConfig(action="block", ttl_s=900.0)
    summary = "that network's traffic is dominated by such accounts"

    def find(self, v: NetworkView) -> Finding | None:
        t, ns, n = self.t, v.ns, v.awakened
        if n < t.min_accounts or n < t.takeover_min_accounts or ns.flagged_share() < t.takeover_share:
            return None
        ns.flagged_until = v.o.ts + t.takeover_hold_s  # keep the network's state while it is blocked
        return Finding(v.o.net, ns.flagged_share())
