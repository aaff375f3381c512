"""Awakened-key fan-out: many old, quiet accounts waking up together on one network, driven alike.

No single account is remarkable; together they are: several awakened, busy accounts at once on one
network, run through the same few addresses with one client, as one operator drives stolen keys from
a handful of rented servers. An account counts as awakened only when its burst began on a network it
had not used before (the thief's, not the owner's). The CI runners of many customers also wake together
on one cloud network at the top of the hour: every hour on the network they used the hour before, and
the first time each on its own leased runner with its own client: awakening together is not enough,
acting alike is needed. The accounts are blocked; the network itself only when its traffic
is theirs and no ordinary customer of it is active there (honest people share networks), which stops
what arrives new on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.group_stage import NetworkView


class FanoutThresholds(Strict):
    """How many awakened accounts acting alike on one network make a fan-out, and when the network itself
    is taken."""

    min_accounts: int = Field(3, ge=1, description="awakened accounts acting alike on one network")
    min_coordination: float = Field(
        0.6, ge=0, le=1,
        description="how alike they act: mean of the share sharing addresses and the commonest client's share")
    takeover_share: float = Field(0.9, gt=0, le=1, description="share of a network's events from flagged accounts")
    takeover_min_accounts: int = Field(10, ge=1)
    takeover_hold_s: float = Field(900.0, gt=0, description="a taken-over network's state is kept this long")


class _Fanout(Rule[FanoutThresholds]):
    stage = "network"
    section = "fanout"
    Thresholds = FanoutThresholds

    def coordinated(self, v: NetworkView) -> float | None:
        """How alike the awakened accounts act, when enough of them do; else None."""
        if v.awakened < self.t.min_accounts:
            return None
        addresses, client = v.ns.coordination()
        together = (addresses + client) / 2
        return together if together >= self.t.min_coordination else None

    def evidence(self, v: NetworkView) -> dict[str, Any]:
        ev = v.ns.evidence(v.o.ts, v.window_s)
        ev["account_rps"] = round(v.o.awakened_rps, 2)
        ev["awakened_sharing_addresses"], ev["awakened_top_client_share"] = v.ns.coordination()
        ev["network_established_accounts"] = v.ns.established(v.o.ts, v.window_s)
        return ev


class NetworkFanout(_Fanout):
    """An awakened account on a network where ``min_accounts`` awakened within the window.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(6):            # six old accounts, suddenly at 1 request a second, one tool, one server
    ...     o = observation(10.0 + i, f"k{i}", awakened_rps=1.0, user_agent="tool/1", address=9)
    ...     _ = stage.observe_networks(o, [o.net], out)
    >>> [(d.key, d.reason) for d in out]
    [('k2', 'network_fanout'), ('k3', 'network_fanout'), ('k4', 'network_fanout'), ('k5', 'network_fanout')]
    >>> stage, out = group_stage()
    >>> for i in range(6):            # six CI jobs of six customers: own runners, own clients
    ...     o = observation(10.0 + i, f"k{i}", awakened_rps=1.0, user_agent=f"sdk/{i % 3}", address=i)
    ...     _ = stage.observe_networks(o, [o.net], out)
    >>> out
    []
    """

    name = "network_fanout"
    scope = "account"
    order = 10
    default = RuleConfig(action="block", ttl_s=1800.0)
    summary = ("an old account that woke up far above its own baseline on a network new to it, where several "
               "others woke up at once, through the same addresses or with one client (stolen keys)")

    def find(self, v: NetworkView) -> Finding | None:
        together = self.coordinated(v)
        if together is None:
            return None
        return Finding(v.o.account, min(1.0, together * v.awakened / (2 * self.t.min_accounts)))


class NetworkTakeover(_Fanout):
    """The network itself, once ``takeover_min_accounts`` awakened there acting alike, they carry most of its
    traffic, and no ordinary customer of the network is active there.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(10):                   # ten stolen keys, and nothing else on the network
    ...     o = observation(10.0 + i, f"k{i}", awakened_rps=1.0, user_agent="tool/1", address=9)
    ...     _ = stage.observe_networks(o, [o.net], out)
    >>> [(d.scope, d.key) for d in out if d.reason == "network_takeover"]
    [('network', '198.51.100.0/24')]
    """

    name = "network_takeover"
    scope = "network"
    order = 11
    default = RuleConfig(action="block", ttl_s=900.0)
    summary = ("that network, once such accounts carry its traffic and no ordinary (old, not awakened) customer "
               "of it is active: stops what arrives new on it")

    def find(self, v: NetworkView) -> Finding | None:
        t, ns, n = self.t, v.ns, v.awakened
        if (n < t.takeover_min_accounts or ns.flagged_share() < t.takeover_share or self.coordinated(v) is None
                or ns.established(v.o.ts, v.window_s)):
            return None
        ns.flagged_until = v.o.ts + t.takeover_hold_s  # keep the network's state while it is blocked
        return Finding(v.o.net, ns.flagged_share())
