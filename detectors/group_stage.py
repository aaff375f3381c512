"""The group stage: per-network, per-ASN and per-cluster statistics and their rules.

Partitioned by group key: a network or a cluster gathers many accounts from many account partitions.
An observation reaches the stage holding its network first (``observe_networks``), which counts the
crowd of young accounts there, then the stages holding its cluster keys (``observe_clusters``), in the
order ``detectors.routing`` visits them.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.clusters import ClusterState, ClusterTracker
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
    """A young account's observation on one of its clusters, as the cluster rules read it."""

    __slots__ = ("o", "key", "c", "crowded", "min_accounts")

    def __init__(self) -> None:
        self.o: Observation
        self.key = ""
        self.c: ClusterState
        self.crowded = False  # many young accounts on its network with it: a classroom, a NAT
        self.min_accounts = 0


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
        self._configure(cfg)

    def _configure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.network_rules: list[Rule[Any]] = [r(cfg.section(r.section)) for r in RULES if r.stage == "network"]
        self.cluster_rules: list[Rule[Any]] = [r(cfg.section(r.section)) for r in RULES if r.stage == "cluster"]

    def observe_networks(self, o: Observation, keys: list[str], decisions: list[Decision]) -> int:
        """The observation on its network and ASN (those of ``keys`` this stage holds).

        Returns the crowd around a young account on its network (young accounts seen there within the
        cluster window, when the network's young accounts do not harvest): the cluster rules spare an
        account in a crowd, so the stage that holds the network hands this number on with the
        observation to the stages holding its clusters. 0 when the network is not among ``keys``."""
        ccfg = self.cfg.cluster
        ts = o.ts
        if ts > self.now:
            self._tick(ts)
        crowd = 0
        if keys[0] == o.net:
            ns = self.networks.observe(o.net, o.account, ts, o.young, o.awakened_rps > 0, o.out_tok, o.in_tok,
                                       o.harvest)
            if o.awakened_rps > 0:
                v = self._net_view
                v.o, v.ns, v.window_s = o, ns, self.cfg.network.window_s
                v.awakened = self.networks.mark_awakened(ns, o.account, ts)
                for rule in self.network_rules:
                    f = rule.find(v)
                    if f is not None:
                        self._say(rule, f, ts, v, decisions)
            # Young accounts that live on one network full of other young accounts asking ordinary
            # questions: a classroom or hackathon. A proxy exit crowded by a campaign harvests instead.
            if o.young and o.networks_used == 1 and ns.young_harvest_share() < ccfg.crowd_max_harvest_share:
                crowd = ns.young_accounts(ts, ccfg.window_s)
        if keys[-1] != o.net:  # the ASN key comes last among the network keys
            self.networks.observe(keys[-1], o.account, ts, o.young, False, o.out_tok, o.in_tok)
        return crowd

    def observe_clusters(self, o: Observation, keys: list[str], crowd: int, decisions: list[Decision]) -> bool:
        """A young account's observation on its clusters (``keys``, in visiting order), given the crowd on
        its network. Returns True when a conclusive rule fired: the account's later cluster keys are then
        left alone (the routing stops its visit there too)."""
        ccfg = self.cfg.cluster
        ts = o.ts
        if ts > self.now:
            self._tick(ts)
        v = self._cluster_view
        v.o, v.crowded, v.min_accounts = o, crowd >= ccfg.crowd_min_accounts, ccfg.min_accounts
        observe = self.clusters.observe
        for key in keys:
            c = observe(key, o.account, ts, o.net_id, o.harvest)
            if not c.flagged:
                continue
            v.key, v.c = key, c
            for rule in self.cluster_rules:
                f = rule.find(v)
                if f is None:
                    continue
                self._say(rule, f, ts, v, decisions)
                if rule.conclusive:
                    return True
                break
        return False

    def _say(self, rule: Rule[Any], f: Finding, ts: float, view: Any, decisions: list[Decision]) -> None:
        policy = self.policy
        if policy.would_decide(rule.scope, f.key, rule.name, ts):
            d = policy.decide(rule.scope, f.key, rule.name, ts, f.score, rule.evidence(view))
            if d is not None:
                decisions.append(d)

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
        self.policy.expire(now)
        self._next_expiry = now + EXPIRY_EVERY_S
