"""Campaigns: accounts acting together, judged by how much a cluster's members share.

A cluster (accounts sharing a prompt band, a client with its sign-up window, or a card) is scored on
six kinds of evidence, each the share of its recent members that show it: cards shared among them,
exits shared or hopped (a proxy pool), prompts shared, one identity (young, signed up together, one
client), harvesting long answers, machine-regular pace. Every one of these has honest holders (an
organisation's seats share a card, newcomers on a VPN hop exits, a launch-day wave signs up together
and asks for long answers, an agent tool's users share its prompts and client), but honest groups hold
two or three at once and campaigns most; and a campaign runs on infrastructure (shared cards, exits)
or on scripts (machine pace), so one of those must be there. The account itself must fit: it shows enough
of what the cluster shares (beyond what being in the cluster shows: the card of a card's cluster),
the campaign's infrastructure among it. The score and each part go into the decision's evidence.

A campaign member stays blocked while its campaign goes on: the block lasts a few times the members'
own time between requests (a glacial campaign's hour), never less than the rule's TTL, and is renewed
whenever the member comes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.clusters import AUTOMATED, HARVEST, REPEAT, ROTATING, SEASONED, YOUNG, ClusterState, Member
from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.group_stage import ClusterView

PARTS = ("cards", "exits", "prompts", "identity", "harvest", "automation")


class CampaignThresholds(Strict):
    """How a cluster's composition is weighed, when it is a campaign, and how long its members stay blocked."""

    min_accounts: int = Field(6, ge=2, description="members a cluster needs before its composition is judged")
    w_cards: float = Field(1.0, ge=0, description="weight of cards shared among members")
    w_exits: float = Field(1.0, ge=0, description="weight of exits hopped or shared (a pool spread over networks)")
    w_prompts: float = Field(1.0, ge=0, description="weight of prompts shared among members")
    w_identity: float = Field(1.0, ge=0, description="weight of one identity: young, signed up together, one client")
    w_harvest: float = Field(1.0, ge=0, description="weight of harvesting long answers")
    w_automation: float = Field(1.0, ge=0, description="weight of machine-regular pace")
    block_score: float = Field(3.8, gt=0, description="a cluster scoring this (of 6 at the default weights) is a campaign")
    review_score: float = Field(3.0, gt=0, description="from this score, short of a campaign: for review")
    min_infrastructure: float = Field(
        0.5, ge=0,
        description="cards + exits parts, or the machine-pace part, at least this: a campaign runs on shared "
                    "infrastructure or on scripts")
    member_min_fit: float = Field(
        0.7, ge=0, le=1,
        description="share of the cluster's evidence the account shows itself, to count as one of the campaign")
    min_showing: int = Field(
        3, ge=1, description="members who could show a trait (a second request, a card...) before its share counts")
    pool_min_networks: int = Field(4, ge=1, description="networks the members span for shared exits to count")
    pool_max_network_share: float = Field(
        0.5, gt=0, le=1, description="most members one network may hold for shared exits to count (else: a venue)")
    hold_gaps: float = Field(4.0, gt=0, description="a member's block lasts this many of the members' request gaps")
    hold_max_s: float = Field(86400.0, gt=0, description="...at most this long")


UNKNOWN = 0.5  # a part no member can show yet weighs as a coin toss: absence of evidence is not evidence


def _share(shown: int, could: int, least: int) -> float:
    """``shown`` of the ``could`` members who could show a trait; ``UNKNOWN`` from fewer than ``least``."""
    return shown / could if could >= least else UNKNOWN


def composition(c: ClusterState, t: CampaignThresholds) -> dict[str, float]:
    """The six parts of a cluster's score, each 0-1: the share of the members who could show a trait
    that do (whether an account hops exits shows from its second request, its pace from its sixth; a
    card or a prompt only when the gateway sends it). A part too few members can show counts
    ``UNKNOWN``; the infrastructure parts (cards, exits) count only what is shown.

    >>> from detectors.clusters import ClusterTracker, HARVEST
    >>> from detectors.config import ClusterConfig
    >>> tr = ClusterTracker(ClusterConfig())
    >>> for i in range(8):   # eight new accounts, eight networks, one card, one client, long answers
    ...     c = tr.observe("pay:x", f"a{i}", float(i), net=i, card=7, client=3, cohort=1, prompt=0,
    ...                    flags=HARVEST | YOUNG)
    >>> composition(c, CampaignThresholds())
    {'cards': 1.0, 'exits': 0.0, 'prompts': 0.5, 'identity': 1.0, 'harvest': 1.0, 'automation': 0.5}
    """
    n = len(c.members)
    least = t.min_showing
    spread = len(c.nets) >= t.pool_min_networks and c.nets.top() <= t.pool_max_network_share * n
    carded = sum(c.cards.values())
    prompted = sum(c.prompts.values())
    return {
        "cards": _share(c.cards.shared, carded, least) if carded >= least else 0.0,
        "exits": max(_share(c.count(ROTATING), c.count(REPEAT), least) if c.count(REPEAT) >= least else 0.0,
                     c.nets.shared / n if spread else 0.0),
        "prompts": _share(c.prompts.shared, prompted, least),
        "identity": (c.count(YOUNG) + c.cohorts.top() + c.clients.top()) / (3 * n),
        "harvest": c.count(HARVEST) / n,
        "automation": _share(c.count(AUTOMATED), c.count(SEASONED), least),
    }


def weighted(parts: dict[str, float], t: CampaignThresholds) -> tuple[float, float]:
    """(score, infrastructure) of the parts, at the section's weights."""
    w = (t.w_cards, t.w_exits, t.w_prompts, t.w_identity, t.w_harvest, t.w_automation)
    score = sum(wi * parts[p] for wi, p in zip(w, PARTS, strict=True))
    return score, parts["cards"] + parts["exits"]


# The part every member of a cluster of each kind shows by being in it: no evidence that it belongs.
DEFINING = {"pay": "cards", "signup": "identity", "f0": "prompts", "f1": "prompts", "f2": "prompts",
            "f3": "prompts", "f4": "prompts", "f5": "prompts", "f6": "prompts", "f7": "prompts"}


def member_parts(c: ClusterState, m: Member, kind: str = "") -> dict[str, float | None]:
    """The same parts for one member, None for a part it cannot show yet or shows by being in a cluster
    of this ``kind`` (``pay``, ``signup``, ``f0``...): does it share the cluster's card, hop exits, share
    its prompts, its identity, harvest, run at machine pace. (A member's exits count when it hops them
    itself: a network it shares with others may be a venue it shares with honest peers.)"""
    f = m.flags
    parts: dict[str, float | None] = {
        "cards": (1.0 if c.cards.get(m.card, 0) >= 2 else 0.0) if m.card else None,
        "exits": (1.0 if f & ROTATING else 0.0) if f & REPEAT else None,
        "prompts": (1.0 if c.prompts.get(m.prompt, 0) >= 2 else 0.0) if m.prompt else None,
        "identity": ((1 if f & YOUNG else 0) + (1 if m.cohort and c.cohorts.get(m.cohort, 0) >= 2 else 0)
                     + (1 if m.client and c.clients.get(m.client, 0) >= 2 else 0)) / 3,
        "harvest": 1.0 if f & HARVEST else 0.0,
        "automation": (1.0 if f & AUTOMATED else 0.0) if f & SEASONED else None,
    }
    defining = DEFINING.get(kind)
    if defining is not None:
        parts[defining] = None
    return parts


class Judgement:
    """A cluster's composition judged once per visit of a key (both campaign rules read it), and how well
    the account fits it: the share of the cluster's weighted evidence that the account shows itself. A
    random account in a campaign's cluster (a prompt that happens to share a band with the campaign's
    template) shows little of what makes the cluster a campaign."""

    __slots__ = ("parts", "score", "infrastructure", "member", "fit", "member_infrastructure", "member_coordinated")

    def __init__(self, c: ClusterState, m: Member, kind: str, t: CampaignThresholds):
        self.parts = composition(c, t)
        self.score, self.infrastructure = weighted(self.parts, t)
        if self.parts["automation"] != UNKNOWN:  # scripts are the campaign's other infrastructure
            self.infrastructure = max(self.infrastructure, self.parts["automation"])
        self.member = member_parts(c, m, kind)
        # The account takes part in the campaign's operation itself: it shares its card (also in the card's
        # own cluster), hops exits like it, or runs at machine pace like it. At its first request whether it
        # hops exits cannot show; in a cluster of shared prompts or a card whose members hop exits, that
        # first request is given the campaign's benefit (a campaign's replacement accounts come one by one).
        p = self.parts
        # ...and it acts together with the others, beyond the infrastructure and habits honest people share
        # too (a VPN's exits, long answers, a script's pace): it shares their card, their prompts, or two of
        # young, sign-up window and client (what being in this kind of cluster shows does not count).
        mm = self.member
        self.member_coordinated = bool(mm["cards"] or mm["prompts"] or (mm["identity"] or 0.0) >= 0.6)
        self.member_infrastructure = bool(
            (p["cards"] >= 0.5 and m.card and c.cards.get(m.card, 0) >= 2)
            or (p["exits"] >= 0.5 and (self.member["exits"] or (self.member["exits"] is None and kind != "signup"
                                                                   and kind != "net")))
            or (p["automation"] >= 0.5 and p["automation"] != UNKNOWN and self.member["automation"]))
        # Of the cluster's evidence in the parts the member can show, the share it shows.
        could = weighted({p: self.parts[p] if self.member[p] is not None else 0.0 for p in PARTS}, t)[0]
        shown = weighted({p: self.parts[p] * (self.member[p] or 0.0) for p in PARTS}, t)[0]
        self.fit = shown / could if could > 0 else 0.0


def infrastructure(c: ClusterState, t: CampaignThresholds) -> float:
    """The cards, exits and machine-pace parts alone, cheaply: most clusters (people sharing a popular
    prompt) have none, and need no more judging."""
    n = len(c.members)
    least = t.min_showing
    carded = sum(c.cards.values()) if c.cards.shared else 0
    repeat, seasoned = c.count(REPEAT), c.count(SEASONED)
    infra = c.cards.shared / carded if carded >= least else 0.0
    if repeat >= least:
        infra += c.count(ROTATING) / repeat
    if c.nets.shared and len(c.nets) >= t.pool_min_networks:
        infra = max(infra, c.nets.shared / n)  # an upper bound of cards + exits with the pool
    if seasoned >= least:
        infra = max(infra, c.count(AUTOMATED) / seasoned)
    return infra


def judge(v: ClusterView, t: CampaignThresholds) -> Judgement | None:
    """The view's cluster judged (memoized on the view for this key), or None when too small to judge or
    without the infrastructure a campaign runs on."""
    c = v.c
    if len(c.members) < t.min_accounts:
        return None
    if v.memo is None:
        cached = c.memo
        if cached is None or cached[0] != c.version:  # type: ignore[index]
            cached = c.memo = (c.version, infrastructure(c, t))
        if cached[1] < t.min_infrastructure:  # type: ignore[index]
            v.memo = False
    if v.memo is False:
        return None
    if v.memo is None:
        v.memo = Judgement(v.c, v.m, v.key.split(":", 1)[0], t)
    judgement: Judgement = v.memo
    return judgement if judgement.infrastructure >= t.min_infrastructure else None


def hold_s(v: ClusterView, t: CampaignThresholds) -> float:
    """How long a member's block holds: a few of the members' gaps between requests (the cluster's, or the
    account's own when longer), at most ``hold_max_s``."""
    return min(t.hold_max_s, t.hold_gaps * max(v.c.gap_s, v.o.gap_s))


class _CampaignRule(Rule[CampaignThresholds]):
    scope = "account"
    stage = "cluster"
    section = "campaign"
    Thresholds = CampaignThresholds

    def evidence(self, v: ClusterView) -> dict[str, Any]:
        j = judge(v, self.t)
        assert j is not None
        ev: dict[str, Any] = v.c.evidence()
        ev["cluster"] = v.key.split(":", 1)[0]
        ev["campaign_score"] = round(j.score, 2)
        ev.update({f"part_{p}": round(x, 2) for p, x in j.parts.items()})
        ev["member_fit"] = round(j.fit, 2)
        ev["member_parts"] = [p for p, x in j.member.items() if x is not None and x >= 0.5]
        ev["members_gap_s"] = round(v.c.gap_s)
        ev["account_gap_s"] = round(v.o.gap_s)
        ev["hold_s"] = round(hold_s(v, self.t))
        ev["hold_basis"] = (f"{self.t.hold_gaps:g} x the longer of the members' and the account's gap between "
                            f"requests, at most {self.t.hold_max_s:.0f} s, never under the rule's TTL; renewed "
                            "while the account comes back")
        return ev


class Campaign(_CampaignRule):
    """A member of a cluster whose composition makes it a campaign: blocked, while the campaign goes on.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(8):    # new accounts, one card, hopping exits, long answers, one client
    ...     o = observation(10.0 + i, f"a{i}", f"203.0.{i}.0/24", young=True, harvest=True, rotating=True,
    ...                     requests=3, payment_fp="card", user_agent="sdk/1", created=0.0)
    ...     _ = stage.observe_clusters(o, ["signup:sdk/1|0", "pay:card"], 0, out)
    >>> sorted({d.key for d in out if d.reason == "campaign"})
    ['a6', 'a7']
    >>> out[0].evidence["campaign_score"], out[0].evidence["part_cards"], out[0].evidence["part_exits"]
    (5.0, 1.0, 1.0)
    """

    name = "campaign"
    order = 10
    conclusive = True
    default = RuleConfig(action="block", ttl_s=3600.0)
    summary = ("an account in a cluster (prompt band, client + sign-up window, or card) whose members share "
               "enough of cards, exits, prompts, identity, harvesting and machine pace, on shared "
               "infrastructure, and that shares enough of it itself; held while the campaign goes on")

    def find(self, v: ClusterView) -> Finding | None:
        t = self.t
        j = judge(v, t)
        if (j is None or j.score < t.block_score or j.infrastructure < t.min_infrastructure
                or j.fit < t.member_min_fit or not j.member_infrastructure or not j.member_coordinated):
            return None
        return Finding(v.o.account, min(1.0, j.score / 6.0), hold_s(v, t))


class CampaignReview(_CampaignRule):
    """A member of a cluster on shared infrastructure that scores short of a campaign, or of one it hardly
    fits: for review.

    >>> from detectors.tiny import group_stage, observation
    >>> stage, out = group_stage()
    >>> for i in range(8):    # new accounts of a family on one card, hopping networks, ordinary answers
    ...     o = observation(10.0 + i, f"a{i}", f"203.0.{i}.0/24", young=True, rotating=True, requests=3,
    ...                     payment_fp="card", user_agent=f"browser/{i}", created=0.0)
    ...     _ = stage.observe_clusters(o, [f"signup:browser/{i}|0", "pay:card"], 0, out)
    >>> sorted({(d.reason, d.action) for d in out})
    [('campaign_review', 'review')]
    """

    name = "campaign_review"
    order = 11
    default = RuleConfig(action="review", ttl_s=3600.0)
    summary = ("uncertain: a cluster on shared infrastructure scoring short of a campaign, or a campaign the "
               "account hardly fits (never enforced)")

    def find(self, v: ClusterView) -> Finding | None:
        j = judge(v, self.t)
        if j is None or j.score < self.t.review_score:
            return None
        return Finding(v.o.account, min(1.0, j.score / 6.0))
