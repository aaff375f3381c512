"""Payment instruments of campaigns: a card whose accounts act as a campaign is blocked as a whole.

A decision of scope ``payment`` covers every account billed to the card, including accounts opened on
it later, so the campaign's next account is stopped before its first request. It needs several of the
card's recent accounts to have been found in a campaign by their clusters, and them to be most of the
card's accounts: an organisation whose seats share one card, with ordinary use, has none or few such
accounts among many, and is never blocked this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.clusters import CAMPAIGN
from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.group_stage import ClusterView


class PaymentThresholds(Strict):
    """When a card's accounts are a campaign's."""

    min_accounts: int = Field(2, ge=2, description="the card's recent accounts found in a campaign, at least")
    min_share: float = Field(
        0.6, gt=0, le=1, description="...and at least this share of the card's recent accounts (an org's card: few)")
    hold_s: float = Field(86400.0, gt=0, description="how long a card's block holds past its last campaign account")


class PaymentCampaign(Rule[PaymentThresholds]):
    """The card of a cluster whose recent accounts are mostly campaign members.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(18):   # new accounts on one card, hopping exits, long answers, one client, twice each
    ...     o = observation(10.0 + i, f"a{i % 9}", f"203.0.{i}.0/24", young=True, harvest=True, rotating=True,
    ...                     requests=3, payment_fp="card", user_agent="sdk/1", created=0.0)
    ...     _ = stage.observe_clusters(o, ["signup:sdk/1|0", "pay:card"], 0, out)
    >>> [(d.scope, d.key, d.action) for d in out if d.reason == "payment_campaign"]
    [('payment', 'card', 'block')]
    """

    name = "payment_campaign"
    scope = "payment"
    stage = "cluster"
    order = 20
    section = "payment"
    Thresholds = PaymentThresholds
    default = RuleConfig(action="block", ttl_s=3600.0)
    summary = ("a card (`payment_fp`) most of whose recent accounts were found in a campaign: every account "
               "billed to it, also ones opened later")

    def find(self, v: ClusterView) -> Finding | None:
        if not v.key.startswith("pay:"):
            return None
        c, t = v.c, self.t
        found = c.count(CAMPAIGN)
        if found < t.min_accounts or found < t.min_share * len(c.members):
            return None
        return Finding(v.o.payment_fp or v.key[4:], found / len(c.members), t.hold_s)

    def evidence(self, v: ClusterView) -> dict[str, Any]:
        c = v.c
        return {"card_accounts": len(c.members), "card_campaign_accounts": c.count(CAMPAIGN),
                "card_networks": len(c.nets), "hold_s": self.t.hold_s,
                "hold_basis": "held past the card's last campaign account; renewed while they keep coming"}
