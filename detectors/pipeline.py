"""The detector: events in, decisions out; the one function replay and the workers share.

Two stages, because their state is keyed differently:

- ``AccountStage`` (partitioned by account): event time, duplicates, lateness,
  per-account statistics and the account rules (burst, proxy harvester,
  population outlier). It hands each event on as an ``Observation`` that
  carries the account's features.
- ``GroupStage`` (partitioned by group key): per-network and per-ASN
  statistics, awakened-key fan-out, and clusters of young accounts. ``owns``
  says which group keys this instance holds, so a worker that owns some
  partitions evaluates just its share and the union is the single-process answer.

``PopulationStage`` holds the population model (a shared River HalfSpaceTrees): a worker's
account stage runs one per account partition in line; replay's ``Detector`` runs one for all
accounts as a stage of its own, fed the feature vectors the account stage leaves in ``to_score``.

``Detector`` chains them in one process (replay, tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import msgspec

from detectors.accounts import AccountTracker
from detectors.clusters import ClusterTracker, cluster_keys
from detectors.config import ClusterConfig, DetectorConfig
from detectors.dedupe import RecentIds
from detectors.events import Event, Reject, encode_event
from detectors.network import NetworkKeys, NetworkTracker
from detectors.policy import Decision, DecisionLedger, Policy
from detectors.population import PopulationModel, features


class Observation(msgspec.Struct, array_like=True, gc=False):
    """One valid event as the group stage needs it: who, where, and the account's features."""

    ts: float
    account: str
    net: str
    net_id: int
    asn: int | None
    young: bool
    harvest: bool
    awakened_rps: float  # the 10 s rate of an account that just woke up, else 0
    out_tok: int
    in_tok: int
    created: float | None
    user_agent: str | None
    prompt_fp: str | None
    payment_fp: str | None
    harvest_ratio: float
    networks_used: int  # distinct networks its requests came from (a proxy's exits: many)


@lru_cache(maxsize=65_536)  # twice per request, over a few thousand ASNs
def asn_key(asn: int) -> str:
    return f"AS{asn}"


def group_keys(o: Observation, ccfg: ClusterConfig) -> list[str]:
    """Every group key an observation updates: its network, its ASN, and (young accounts) its clusters."""
    keys = [o.net]
    if o.asn is not None:
        keys.append(asn_key(o.asn))
    if o.young:
        keys.extend(cluster_keys(o.prompt_fp, o.payment_fp, o.user_agent, o.created, ccfg))
    return keys


def split_keys(o: Observation, keys: list[str]) -> tuple[list[str], list[str]]:
    """Group keys (in ``group_keys`` order, any subset) as network keys (network, ASN) and cluster keys.

    >>> o = Observation(0.0, "a", "10.0.0.0/24", 1, 64500, True, True, 0.0, 1, 1, None, None, None, "p", 1.0, 1)
    >>> split_keys(o, ["10.0.0.0/24", "AS64500", "pay:p"]), split_keys(o, ["pay:p"])
    ((['10.0.0.0/24', 'AS64500'], ['pay:p']), ([], ['pay:p']))
    """
    n = 0
    if n < len(keys) and keys[n] == o.net:
        n += 1
    if o.asn is not None and n < len(keys) and keys[n] == asn_key(o.asn):
        n += 1
    return keys[:n], keys[n:]


class AccountStage:
    """Per-account statistics and rules over events keyed by account."""

    def __init__(self, cfg: DetectorConfig, policy: Policy, score_population: bool = True):
        """``score_population`` False: the accounts' feature vectors are left in ``to_score`` for a
        ``PopulationStage`` of the caller's, rather than scored here (replay, which has one model for all)."""
        self.cfg = cfg
        self.policy = policy
        self.accounts = AccountTracker(cfg.account)
        self.netkeys = NetworkKeys(cfg.network.ipv4_prefix, cfg.network.ipv6_prefix, cfg.network.ip_cache_size)
        self._ip_cache = self.netkeys.cache
        self.recent = RecentIds(cfg.event_time.dedupe_ids)
        self.scoring = cfg.population.enabled
        self.population = PopulationStage(cfg, policy) if score_population else None
        self.to_score: list[tuple[str, float, dict[str, float]]] = []
        self.start_ts: float | None = None  # when this detector began watching (event time)
        self.now = -math.inf  # detector event time: the latest accepted ts
        self.duplicates = 0
        self._next_expiry = -math.inf

    def process(self, events: Iterable[Event]) -> tuple[list[Observation], list[Decision], list[Reject]]:
        obs: list[Observation] = []
        decisions: list[Decision] = []
        rejects: list[Reject] = []
        one = self.process_one
        for ev in events:
            o = one(ev, decisions, rejects)
            if o is not None:
                obs.append(o)
        return obs, decisions, rejects

    def process_one(self, ev: Event, decisions: list[Decision], rejects: list[Reject]) -> Observation | None:
        """One event: its account's statistics and rules; the observation for the group stage, if valid."""
        acfg = self.cfg.account
        pcfg = self.cfg.proxy
        ncfg = self.cfg.network
        lateness = self.cfg.event_time.max_lateness_s
        young_age, old_age = acfg.young_age_s, acfg.old_age_s
        decide, pending = self.policy.decide, self.policy.pending
        ts = ev.ts
        if ts < self.now - lateness:
            # Partitions are read side by side but not in step (a backlog after an outage, a slow
            # broker): lateness is judged against the account's own latest event, so one partition
            # running ahead never makes another's events late. An account the stage no longer holds
            # is late only when its state would already have expired.
            known = self.accounts.states.get(ev.account_id)
            if known is not None and ts < known.last_ts - lateness:
                rejects.append(Reject("late", f"ts={ts} is {known.last_ts - ts:.0f}s behind its account's "
                                              "latest event", encode_event(ev)))
                return None
            if known is None and ts < self.now - acfg.idle_expiry_s:
                rejects.append(Reject("late", f"ts={ts} is {self.now - ts:.0f}s behind detector time, "
                                              "beyond the account idle expiry", encode_event(ev)))
                return None
        if self.recent.seen(ev.event_id):
            self.duplicates += 1
            return None
        if self.start_ts is None:
            self.start_ts = ts
        if ts > self.now:
            self.now = ts
            if ts >= self._next_expiry:
                self._expire(ts)
        acct = ev.account_id
        net_hit = self._ip_cache.get(ev.ip)
        net, net_id = net_hit if net_hit is not None else self.netkeys.lookup(ev.ip)
        created = ev.account_created_ts
        s = self.accounts.get_or_create(acct, ts, created)
        out_tok = ev.output_tokens or 0
        in_tok = ev.input_tokens or 0
        s.update(ts, net_id, out_tok, in_tok, learn=ts >= s.flagged_until)
        age, harvest_ratio, rs, r10, ep_rate = s.signals(ts)
        young = age < young_age

        # A burst: a rate far above the account's own baseline, once that baseline is credible.
        # Two windows: 2 s catches a steep jump at once, 10 s a sustained one that noise never fakes.
        # ...and a third: the exact rate since a quiet account woke up, once enough requests are in.
        re = ep_rate if s.ep_n >= acfg.burst_episode_min_events else 0.0
        # Per-account or per-organisation headroom (a contract's tier): every burst threshold scales with it.
        headroom = acfg.rate_headroom
        k = (headroom.get(acct) or (headroom.get(ev.org_id) if ev.org_id else None) or 1.0) if headroom else 1.0
        fast_rps, min_rps, episode_rps = acfg.burst_fast_rps * k, acfg.burst_min_rps * k, acfg.burst_episode_rps * k
        if rs >= fast_rps or r10 >= min_rps or re >= episode_rps:
            observed = ts - max(self.start_ts, s.created if s.created == s.created else self.start_ts)
            if observed >= acfg.burst_min_observed_s:
                base = max(acfg.burst_baseline_floor_rps, s.baseline(observed))
                rate_now = max(rs if rs >= fast_rps else 0.0, r10, re if re >= episode_rps else 0.0)
                ratio = rate_now / base
                if ratio >= acfg.burst_ratio:
                    rule = ("account_burst_extreme" if ratio >= acfg.burst_block_ratio
                            and rate_now >= episode_rps else "account_burst")
                    if pending("account", acct, rule, ts):
                        d = decide("account", acct, rule, ts, min(1.0, ratio / (2 * acfg.burst_block_ratio)),
                                   {"rate_rps": round(rate_now, 2), "baseline_rps": round(base, 3),
                                    "ratio": round(ratio, 1), "observed_s": round(observed)})
                        if d is not None:
                            decisions.append(d)
                    self._flag(s, rule, ts)

        # A young account harvesting long answers through rotating exits (proxy), no fingerprint needed.
        if (age < pcfg.max_age_s and s.n >= pcfg.min_events and harvest_ratio >= pcfg.min_harvest_ratio
                and s.distinct_networks() >= pcfg.min_networks and s.switch_share() >= pcfg.min_switch_share):
            if pending("account", acct, "proxy_harvester", ts):
                d = decide("account", acct, "proxy_harvester", ts, min(1.0, harvest_ratio / 5),
                           {"harvest_ratio": round(harvest_ratio, 2), "networks": s.distinct_networks(),
                            "switch_share": round(s.switch_share(), 2), "age_s": round(age),
                            "events": s.n})
                if d is not None:
                    decisions.append(d)
            self._flag(s, "proxy_harvester", ts)

        if self.scoring and ts - s.scored_ts >= self.cfg.population.score_every_s and s.n >= 3:
            s.scored_ts = ts
            x = features(rs, s.rate_mid(), s.baseline(ts - self.start_ts), harvest_ratio, s.switch_share(),
                         s.timing_cv(), age)
            if self.population is not None:
                self.population.process_one(acct, ts, x, decisions)
            else:
                self.to_score.append((acct, ts, x))

        # Awakened: an old account whose 10 s rate jumped far above its own credible baseline. It stays
        # awakened (and its baseline frozen) for a while, so the network has time to count its peers.
        awakened_rps = 0.0
        if age >= old_age and r10 >= ncfg.awakened_min_rps:
            if ts < s.flagged_until:
                awakened_rps = r10
            else:
                observed = ts - max(self.start_ts, s.created)
                # Against the long-run rate only: a 10 s rate never outruns the 60 s peak by much.
                if observed >= acfg.burst_min_observed_s and r10 >= acfg.burst_ratio * max(
                        acfg.burst_baseline_floor_rps / 10, s.long_rate(observed)):
                    awakened_rps = r10
                    s.flagged_until = max(s.flagged_until, ts + ncfg.window_s)
        return Observation(
            ts, acct, net, net_id, ev.asn, young, harvest_ratio >= acfg.harvest_ratio, awakened_rps,
            out_tok, in_tok, created, ev.user_agent, ev.prompt_fp, ev.payment_fp, harvest_ratio,
            s.nets.bit_count(),
        )

    def reconfigure(self, cfg: DetectorConfig) -> None:
        """Take new thresholds without losing any state (hot reload)."""
        if (cfg.network.ipv4_prefix, cfg.network.ipv6_prefix) != (self.netkeys.v4, self.netkeys.v6):
            self.netkeys = NetworkKeys(cfg.network.ipv4_prefix, cfg.network.ipv6_prefix, cfg.network.ip_cache_size)
            self._ip_cache = self.netkeys.cache
        self.recent.capacity = cfg.event_time.dedupe_ids
        self.netkeys.cache_size = cfg.network.ip_cache_size
        self.cfg = cfg
        self.accounts.cfg = cfg.account
        self.scoring = cfg.population.enabled
        if self.population is not None:
            self.population.reconfigure(cfg)
        self.policy.reconfigure(cfg.policy, cfg.version)

    def _flag(self, s: Any, rule: str, ts: float) -> None:
        rc = self.cfg.policy.rules.get(rule)
        if rc is not None and not rc.shadow:
            s.flagged_until = max(s.flagged_until, ts + rc.ttl_s)

    def _expire(self, now: float) -> None:
        self.accounts.expire(now)
        self.policy.expire(now)
        self._next_expiry = now + 60.0


class PopulationStage:
    """The shared population model as a stage: accounts' feature vectors in event order, each scored
    and learnt, an outlier a ``population_outlier`` finding.

    >>> from detectors.config import DetectorConfig, PopulationConfig
    >>> cfg = DetectorConfig(population=PopulationConfig(warmup_samples=50, window_size=50))
    >>> stage, decisions = PopulationStage(cfg, Policy(cfg.policy)), []
    >>> for i in range(200):
    ...     stage.process_one(f"a{i}", float(i), features(0.1, 0.1, 0.1, 0.5, 0.0, 1.0, 1e7), decisions)
    >>> stage.process_one("odd", 200.0, features(30.0, 20.0, 0.01, 20.0, 1.0, 0.0, 100.0), decisions)
    >>> [(d.key, d.reason, d.action) for d in decisions]
    [('odd', 'population_outlier', 'review')]
    """

    def __init__(self, cfg: DetectorConfig, policy: Policy):
        self.cfg = cfg
        self.policy = policy
        self.model = PopulationModel(cfg.population)
        self._next_expiry = -math.inf

    def process_one(self, account: str, ts: float, x: dict[str, float], decisions: list[Decision]) -> None:
        if ts >= self._next_expiry:  # a policy of its own (replay) expires here; a shared one, twice: harmless
            self.policy.expire(ts)
            self._next_expiry = ts + 60.0
        score = self.model.score_then_learn(x)
        if score >= self.cfg.population.review_score and self.policy.pending(
                "account", account, "population_outlier", ts):
            d = self.policy.decide("account", account, "population_outlier", ts, score,
                                   {k: round(v, 3) for k, v in x.items()})
            if d is not None:
                decisions.append(d)

    def reconfigure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.policy.reconfigure(cfg.policy, cfg.version)


class GroupStage:
    """Per-network, per-ASN and per-cluster statistics and rules over observations."""

    def __init__(self, cfg: DetectorConfig, policy: Policy, owns: Callable[[str], bool] | None = None):
        self.cfg = cfg
        self.policy = policy
        self.owns = owns
        self.networks = NetworkTracker(cfg.network)
        self.clusters = ClusterTracker(cfg.cluster)
        self.now = -math.inf
        self._next_expiry = -math.inf

    def process(self, observations: Iterable[Observation]) -> list[Decision]:
        decisions: list[Decision] = []
        one = self.process_one
        for o in observations:
            one(o, decisions)
        return decisions

    def process_one(self, o: Observation, decisions: list[Decision], keys: list[str] | None = None) -> None:
        """One observation: the networks, ASN and clusters this stage owns among its keys.

        ``keys``: its group keys that this stage owns, when the router already knows them (it computed
        them to route the observation); otherwise they are computed here."""
        if keys is None and self.owns is None:  # one process holds every key: no routing to undo
            nets = [o.net] if o.asn is None else [o.net, asn_key(o.asn)]
            clusters = (cluster_keys(o.prompt_fp, o.payment_fp, o.user_agent, o.created, self.cfg.cluster)
                        if o.young else [])
        else:
            if keys is None:
                owns = self.owns
                keys = [k for k in group_keys(o, self.cfg.cluster) if owns is None or owns(k)]
            nets, clusters = split_keys(o, keys)
        crowd = self.observe_networks(o, nets, decisions) if nets else 0
        if clusters:
            self.observe_clusters(o, clusters, crowd, decisions)

    def observe_networks(self, o: Observation, keys: list[str], decisions: list[Decision]) -> int:
        """The observation on its network and ASN (those of ``keys`` this stage owns).

        Returns the crowd around a young account on its network (young accounts seen there within the
        cluster window, when the network's young accounts do not harvest): the cluster rules spare an
        account in a crowd, so a worker that holds the network hands this number on with the
        observation to the stages that hold its clusters. 0 when the network is not among ``keys``."""
        ncfg = self.cfg.network
        ccfg = self.cfg.cluster
        decide = self.policy.decide
        ts = o.ts
        if ts > self.now:
            self._tick(ts)
        crowd = 0
        if keys[0] == o.net:
            ns = self.networks.observe(o.net, o.account, ts, o.young, o.awakened_rps > 0, o.out_tok, o.in_tok,
                                       o.harvest)
            if o.awakened_rps > 0:
                n = self.networks.mark_awakened(ns, o.account, ts)
                if n >= ncfg.min_accounts:
                    pending = self.policy.pending
                    fanout = pending("account", o.account, "network_fanout", ts)
                    takeover = n >= ncfg.takeover_min_accounts and ns.flagged_share() >= ncfg.takeover_share
                    if takeover:
                        ns.flagged_until = ts + 900.0
                        takeover = pending("network", o.net, "network_takeover", ts)
                    if fanout or takeover:  # the evidence is built only for a decision to be said
                        ev = ns.evidence(ts, ncfg.window_s)
                        ev["account_rps"] = round(o.awakened_rps, 2)
                        if fanout:
                            d = decide("account", o.account, "network_fanout", ts,
                                       min(1.0, n / (4 * ncfg.min_accounts)), ev)
                            if d is not None:
                                decisions.append(d)
                        if takeover:
                            d = decide("network", o.net, "network_takeover", ts, ns.flagged_share(), ev)
                            if d is not None:
                                decisions.append(d)
            # Young accounts that live on one network full of other young accounts asking ordinary
            # questions: a classroom or hackathon. A proxy exit crowded by a campaign harvests instead.
            if o.young and o.networks_used == 1 and ns.young_harvest_share() < ccfg.min_harvest_share:
                crowd = ns.young_accounts(ts, ccfg.window_s)
        if keys[-1] != o.net:  # the ASN key comes last among the network keys
            self.networks.observe(keys[-1], o.account, ts, o.young, False, o.out_tok, o.in_tok)
        return crowd

    def observe_clusters(self, o: Observation, keys: list[str], crowd: int, decisions: list[Decision]) -> bool:
        """A young account's observation on its clusters (``keys``, in ``group_keys`` order), given the
        crowd on its network. Returns True when it made a strong decision: the account's later cluster
        keys are then left alone (a worker stops its chain of stages there too)."""
        ccfg = self.cfg.cluster
        decide, pending = self.policy.decide, self.policy.pending
        ts = o.ts
        if ts > self.now:
            self._tick(ts)
        for key in keys:
            c = self.clusters.observe(key, o.account, ts, o.net_id, o.harvest)
            if not c.flagged:
                continue
            if crowd >= ccfg.crowd_min_accounts:
                continue  # many young accounts on its network with it: a classroom, a hackathon, a NAT
            signup = key.startswith("signup:")
            if signup:
                strong = (c.members_n >= ccfg.signup_min_accounts and o.harvest
                          and c.harvest_share >= ccfg.signup_min_harvest_share)
                rule = "signup_cluster" if strong else None
            else:
                strong = o.harvest and c.harvest_share >= ccfg.min_harvest_share
                rule = "campaign_cluster" if strong else "cluster_review"
            if rule is None:
                continue
            if pending("account", o.account, rule, ts):
                cev = c.evidence()
                cev["cluster"] = key.split(":", 1)[0]
                cev["harvest_ratio"] = round(o.harvest_ratio, 2)
                d = decide("account", o.account, rule, ts, min(1.0, c.members_n / (4 * ccfg.min_accounts)), cev)
                if d is not None:
                    decisions.append(d)
            if strong:
                return True
        return False

    def _tick(self, ts: float) -> None:
        if ts > self.now:
            self.now = ts
            if ts >= self._next_expiry:
                self._expire(ts)

    def reconfigure(self, cfg: DetectorConfig) -> None:
        """Take new thresholds without losing any state (hot reload)."""
        self.cfg = cfg
        self.networks.cfg = cfg.network
        self.clusters.cfg = cfg.cluster
        self.policy.reconfigure(cfg.policy, cfg.version)

    def _expire(self, now: float) -> None:
        self.networks.expire(now)
        self.clusters.expire(now)
        self.policy.expire(now)
        self._next_expiry = now + 60.0


class Detector:
    """Both stages in one process: ``process(events)`` returns decisions and rejections.

    Each stage has its own policy and the decisions of all pass one ledger of what is published, as
    in a worker, whose stages run apart: replay says what the workers would say. The population
    model is one for all accounts, scored in event order between an event's account rules and its
    group rules.

    >>> from detectors.config import ClusterConfig, DetectorConfig
    >>> det = Detector(DetectorConfig())
    >>> evs = [Event(event_id=f"e{i}", ts=1000.0 + i / 20, account_id="old", ip="198.51.100.7",
    ...              account_created_ts=0.0) for i in range(200)]
    >>> quiet = [Event(event_id="q", ts=0.0 + 1.0, account_id="other", ip="192.0.2.1")]
    >>> decisions, rejects = det.process(quiet + evs)
    >>> [(d.scope, d.key, d.action, d.reason) for d in decisions]   # 20/s from a quiet account
    [('account', 'old', 'block', 'account_burst_extreme')]
    >>> decisions[0].ts - evs[0].ts < 3.0                                # within seconds of its start
    True
    """

    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg
        self.accounts = AccountStage(cfg, Policy(cfg.policy, version=cfg.version), score_population=False)
        self.population = PopulationStage(cfg, Policy(cfg.policy, version=cfg.version))
        self.groups = GroupStage(cfg, Policy(cfg.policy, version=cfg.version))
        self.published = DecisionLedger(cfg.policy.refresh_before_expiry_share)

    def process(self, events: Iterable[Event]) -> tuple[list[Decision], list[Reject]]:
        # Event by event through the stages, so what one stage decides never depends on batch size.
        decisions: list[Decision] = []
        rejects: list[Reject] = []
        account_one, group_one = self.accounts.process_one, self.groups.process_one
        population_one, to_score = self.population.process_one, self.accounts.to_score
        for ev in events:
            o = account_one(ev, decisions, rejects)
            if to_score:
                for account, ts, x in to_score:
                    population_one(account, ts, x, decisions)
                to_score.clear()
            if o is not None:
                group_one(o, decisions)
        return self.publish(decisions), rejects

    def publish(self, decisions: list[Decision]) -> list[Decision]:
        return publish(self.published, decisions)


def publish(published: DecisionLedger, decisions: list[Decision]) -> list[Decision]:
    """Of the stages' decisions, in event order, those that add to what ``published`` holds."""
    admit = published.admit
    return [d for d in decisions if admit(d.scope, d.key, d.action, d.ts, d.ttl_s)]
