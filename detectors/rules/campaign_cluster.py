"""Campaign clusters: young accounts acting alike, from many networks, harvesting long answers.

An account joins a cluster through a key it shares with others (a payment fingerprint, a band of its
prompt SimHash, its client with its sign-up window). A cluster spread over several networks, with no
network holding most of it, is a campaign when most of its members harvest; a fresh account joining a
known campaign is then caught on its first request. Young accounts crowded on one network asking
ordinary questions (a classroom, a hackathon) are spared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.group_stage import ClusterView


class CampaignThresholds(Strict):
    """When a spread cluster of young accounts is a campaign."""

    min_harvest_share: float = Field(0.5, ge=0, le=1, description="share of members harvesting long answers")
    signup_min_accounts: int = Field(10, ge=2)
    signup_min_harvest_share: float = Field(0.7, ge=0, le=1)


class _Cluster(Rule[CampaignThresholds]):
    scope = "account"
    stage = "cluster"
    section = "campaign"
    Thresholds = CampaignThresholds
    signup = False  # which cluster keys the rule reads: client + sign-up window, or the others

    def _spread(self, v: ClusterView) -> bool:
        return v.c.flagged and not v.crowded and v.key.startswith("signup:") == self.signup

    def score(self, v: ClusterView) -> float:
        return min(1.0, v.c.members_n / (4 * v.min_accounts))

    def evidence(self, v: ClusterView) -> dict[str, Any]:
        ev = v.c.evidence()
        ev["cluster"] = v.key.split(":", 1)[0]
        ev["harvest_ratio"] = round(v.o.harvest_ratio, 2)
        return ev


class CampaignCluster(_Cluster):
    """A harvesting young account in a spread cluster (payment or prompt band) where most members harvest.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(8):                    # eight new accounts on eight networks, one card, long answers
    ...     o = observation(10.0 + i, f"a{i}", f"203.0.{i}.0/24", young=True, harvest=True, payment_fp="card")
    ...     _ = stage.observe_clusters(o, ["pay:card"], 0, out)
    >>> [d.key for d in out if d.reason == "campaign_cluster"]
    ['a5', 'a6', 'a7']
    """

    name = "campaign_cluster"
    order = 10
    conclusive = True
    default = RuleConfig(action="block", ttl_s=3600.0)
    summary = ("a young account in a cluster of young accounts sharing a payment fingerprint or a prompt "
               "SimHash band (LSH), from many networks, most harvesting long answers")

    def find(self, v: ClusterView) -> Finding | None:
        if self._spread(v) and v.o.harvest and v.c.harvest_share >= self.t.min_harvest_share:
            return Finding(v.o.account, self.score(v))
        return None


class ClusterReview(_Cluster):
    """A young account in such a cluster, short of the harvesting that makes it a campaign: for review.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(6):                    # a family's new accounts on one card, ordinary answers
    ...     o = observation(10.0 + i, f"a{i}", f"203.0.{i}.0/24", young=True, payment_fp="card")
    ...     _ = stage.observe_clusters(o, ["pay:card"], 0, out)
    >>> [(d.key, d.reason, d.action) for d in out]
    [('a5', 'cluster_review', 'review')]
    """

    name = "cluster_review"
    order = 11
    default = RuleConfig(action="review", ttl_s=3600.0)
    summary = "uncertain: such a cluster without harvesting (never enforced)"

    def find(self, v: ClusterView) -> Finding | None:
        if self._spread(v) and not (v.o.harvest and v.c.harvest_share >= self.t.min_harvest_share):
            return Finding(v.o.account, self.score(v))
        return None


class SignupCluster(_Cluster):
    """A harvesting account among many of one client signed up in one window, from many networks.

    Works without ``prompt_fp`` and ``payment_fp``.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(11):                   # eleven new accounts of one client, eleven networks
    ...     o = observation(10.0 + i, f"a{i}", f"203.0.{i}.0/24", young=True, harvest=True, user_agent="sdk/1")
    ...     _ = stage.observe_clusters(o, ["signup:sdk/1|0"], 0, out)
    >>> [d.key for d in out if d.reason == "signup_cluster"]
    ['a9', 'a10']
    """

    name = "signup_cluster"
    order = 12
    conclusive = True
    signup = True
    default = RuleConfig(action="block", ttl_s=3600.0)
    summary = "same client and sign-up window, many networks, harvesting: works without `prompt_fp`/`payment_fp`"

    def find(self, v: ClusterView) -> Finding | None:
        t, c = self.t, v.c
        if (self._spread(v) and c.members_n >= t.signup_min_accounts and v.o.harvest
                and c.harvest_share >= t.signup_min_harvest_share):
            return Finding(v.o.account, self.score(v))
        return None
