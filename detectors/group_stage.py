"""The group stage: per-network, per-ASN and per-cluster statistics and their rules.

Partitioned by group key: a network or a cluster gathers many accounts from many account partitions.
An observation reaches the stage holding its network first (``observe_networks``), then the stages
holding its cluster keys (``observe_clusters``), in the order ``detectors.routing`` visits them, with
what the earlier keys found.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.clusters import (
    AUTOMATED,
    HARVEST,
    REPEAT,
    ROTATING,
    SEASONED,
    YOUNG,
    ClusterState,
    ClusterTracker,
    Member,
    trait,
)
from detectors.config import DetectorConfig
from detectors.network import NetworkState, NetworkTracker
from detectors.observation import Observation
from detectors.policy import Decision, Policy
from detectors.rules import RULES
from detectors.rules.base import Finding, Rule

EXPIRY_EVERY_S = 60.0


class NetworkView:
    """An awakened account's observation on its network, as the network rules read it."""

    __slots__ = ("o", "ns", "awakened", "window_s")

    def __init__(self) -> None:
        self.o: Observation
        self.ns: NetworkState
        self.awakened = 0  # awakened accounts on the network within the window
        self.window_s = 0.0


class ClusterView:
    """An account's observation on one of its clusters, as the cluster rules read it."""

    __slots__ = ("o", "key", "c", "m", "memo", "traits", "traits_of")

    def __init__(self) -> None:
        self.o: Observation
        self.traits: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
        self.traits_of: Observation | None = None  # the observation ``traits`` were computed for
        self.key = ""
        self.c: ClusterState
        self.m: Member  # the account as a member of this cluster
        self.memo: Any = None  # what the first rule that judged this cluster found, for the next ones


class GroupStage:
    """Per-network, per-ASN and per-cluster statistics and rules over observations."""

    def __init__(self, cfg: DetectorConfig, policy: Policy):
        self.policy = policy
        self.networks = NetworkTracker(cfg.network)
        self.clusters = ClusterTracker(cfg.cluster)
        self.now = -math.inf
        self._next_expiry = -math.inf
        self._net_view = NetworkView()
        self._cluster_view = ClusterView()
        # Accounts a conclusive rule decided on here, until half their decision's time has passed: their
        # requests in between are counted in their clusters but not judged again (a campaign's bulk).
        self._decided: dict[str, float] = {}
        self._configure(cfg)

    @property
    def decided(self) -> dict[str, float]:
        """Accounts decided on here, and until when their requests are not judged again (for a snapshot)."""
        return self._decided

    def export_head(self) -> list:
        """The stage's own few numbers, for a snapshot (its trackers and policy ledger are written apart)."""
        return [self.now, self._next_expiry, self.clusters.evicted, self.networks.evicted]

    def restore_head(self, head: list) -> None:
        self.now, self._next_expiry, self.clusters.evicted, self.networks.evicted = head

    def _configure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.network_rules: list[Rule[Any]] = [r(cfg.section(r.section)) for r in RULES if r.stage == "network"]
        self.cluster_rules: list[Rule[Any]] = [r(cfg.section(r.section)) for r in RULES if r.stage == "cluster"]

    def observe_networks(self, o: Observation, keys: list[str], decisions: list[Decision]) -> int:
        """The observation on its network and ASN (those of ``keys`` this stage holds): the network rules
        about an awakened account on its network, and the network as a cluster of the accounts using it
        (``net:`` key; an exit pool's composition). Returns 1 when a conclusive rule fired, else 0, to
        hand on to the account's cluster keys."""
        ts = o.ts
        if ts > self.now:
            self._tick(ts)
        found = 0
        if keys[0] == o.net:
            ns = self.networks.observe(o.net, o.account, ts, o.young, o.awakened_rps > 0, o.out_tok, o.in_tok)
            if o.awakened_rps > 0:
                v = self._net_view
                v.o, v.ns, v.window_s = o, ns, self.cfg.network.window_s
                v.awakened = self.networks.mark_awakened(ns, o.account, ts, o.address, trait(o.user_agent))
                for rule in self.network_rules:
                    f = rule.find(v)
                    if f is not None:
                        self._say(rule, f, ts, v, decisions)
            found = self.observe_clusters(o, ["net:" + o.net], 0, decisions)
        if keys[-1] != o.net:  # the ASN key comes last among the network keys
            self.networks.observe(keys[-1], o.account, ts, o.young, False, o.out_tok, o.in_tok)
        return found

    def observe_clusters(self, o: Observation, keys: list[str], found: int, decisions: list[Decision]) -> int:
        """An account's observation on its clusters (``keys``, in visiting order). ``found`` is 1 when a
        conclusive rule already fired on it in this visit (at a stage that held an earlier key): its later
        clusters then only count it, and its card remembers it as a campaign's. Returns ``found`` as it
        stands after these keys, to hand on with the observation."""
        ccfg = self.cfg.cluster
        ts = o.ts
        if ts > self.now:
            self._tick(ts)
        flags = ((HARVEST if o.harvest else 0) | (YOUNG if o.young else 0) | (ROTATING if o.rotating else 0)
                 | (AUTOMATED if o.automated else 0) | (REPEAT if o.requests > 1 else 0)
                 | (SEASONED if o.requests >= self.cfg.account.automated_min_requests else 0))
        v = self._cluster_view
        v.o = o
        if v.traits_of is not o:  # its traits, once per observation (its network's stage and clusters' may be one)
            v.traits_of = o
            v.traits = (trait(o.payment_fp), trait(o.user_agent),
                        0 if o.created is None else int(o.created // ccfg.signup_bucket_s) | 1 << 40,
                        int(o.prompt_fp[:4], 16) + 1 if o.prompt_fp else 0, flags)
        card, client, cohort, prompt, flags = v.traits
        observe, mark = self.clusters.observe, self.clusters.mark_campaign
        if not found:
            until = self._decided.get(o.account)
            if until is not None and ts < until:
                found = 1
        for key in keys:
            c = observe(key, o.account, ts, o.net_id, card, client, cohort, prompt, flags)
            if c is None:
                continue
            if found:
                mark(c, o.account)
            v.key, v.c, v.m, v.memo = key, c, c.members[o.account], None
            for rule in self.cluster_rules:
                if found and rule.scope == "account":
                    continue  # said once per visit; the card's rule still reads this one
                f = rule.find(v)
                if f is None:
                    continue
                d = self._say(rule, f, ts, v, decisions)
                if rule.conclusive:
                    found = 1
                    mark(c, o.account)
                    if d is not None:
                        self._decided[o.account] = d.ts + 0.5 * d.ttl_s
        return found

    def _say(self, rule: Rule[Any], f: Finding, ts: float, view: Any, decisions: list[Decision]) -> Decision | None:
        policy = self.policy
        if policy.would_decide(rule.scope, f.key, rule.name, ts, f.hold_s):
            d = policy.decide(rule.scope, f.key, rule.name, ts, f.score, rule.evidence(view), f.hold_s)
            if d is not None:
                decisions.append(d)
                return d
        return None

    def _tick(self, ts: float) -> None:
        self.now = ts
        self.policy.watermark.advance(ts)
        if ts >= self._next_expiry:
            self._expire(ts)

    def reconfigure(self, cfg: DetectorConfig) -> None:
        """Take new thresholds without losing any state (hot reload)."""
        self._configure(cfg)
        self.networks.cfg = cfg.network
        self.clusters.cfg = cfg.cluster
        self.policy.reconfigure(cfg.policy, cfg.version)

    def _expire(self, now: float) -> None:
        self.networks.expire(now)
        self.clusters.expire(now)
        self._decided = {a: until for a, until in self._decided.items() if until > now}
        self.policy.expire(now)
        self._next_expiry = now + EXPIRY_EVERY_S
