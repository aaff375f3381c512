"""The account stage: event time, duplicates, lateness, per-account statistics and the account rules.

Partitioned by account. Each valid event updates its account's state, then the stage asks its rules
(``detectors/rules/``, stage ``account``) about a view of that state, and hands the event on to the
group stages as an ``Observation`` carrying the account's features.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.accounts import AccountState, AccountTracker
from detectors.config import DetectorConfig
from detectors.dedupe import RecentIds
from detectors.events import Event, Reject, encode_event
from detectors.network import NetworkKeys
from detectors.observation import Observation
from detectors.policy import Decision, Policy
from detectors.population import features
from detectors.population_stage import PopulationStage
from detectors.rules import RULES
from detectors.rules.base import Rule

EXPIRY_EVERY_S = 60.0


class AccountView:
    """One event's account as the account rules read it (one object per stage, refilled per event)."""

    __slots__ = ("ev", "account", "s", "ts", "age", "harvest_ratio", "rate_2s", "rate_10s", "rate_episode",
                 "start_ts")

    def __init__(self) -> None:
        self.ev: Event
        self.account: str
        self.s: AccountState
        self.ts = self.age = self.harvest_ratio = self.rate_2s = self.rate_10s = self.rate_episode = 0.0
        self.start_ts = 0.0  # when the stage began watching (event time)


def stage_rules(cfg: DetectorConfig, stage: str) -> list[Rule[Any]]:
    """The registry's rules of one stage, in order, each with its thresholds section."""
    return [r(cfg.section(r.section)) for r in RULES if r.stage == stage]


class AccountStage:
    """Per-account statistics and rules over events keyed by account."""

    def __init__(self, cfg: DetectorConfig, policy: Policy, score_population: bool = True):
        """``score_population`` False: the accounts' feature vectors are left in ``to_score`` for a
        ``PopulationStage`` of the caller's, rather than scored here (replay, which has one model for all)."""
        self.policy = policy
        self.accounts = AccountTracker(cfg.account)
        self.netkeys = NetworkKeys(cfg.network.ipv4_prefix, cfg.network.ipv6_prefix, cfg.network.ip_cache_size)
        self._ip_cache = self.netkeys.cache
        self.recent = RecentIds(cfg.event_time.dedupe_ids)
        self.population = PopulationStage(cfg, policy) if score_population else None
        self.to_score: list[tuple[str, float, dict[str, float]]] = []
        self.start_ts: float | None = None  # when this detector began watching (event time)
        self.now = -math.inf  # detector event time: the latest accepted ts
        self.duplicates = 0
        self._next_expiry = -math.inf
        self._view = AccountView()
        self._configure(cfg)

    def _configure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.rules = stage_rules(cfg, "account")
        population = cfg.section("population")
        self.scoring, self.score_every_s = population.enabled, population.score_every_s

    def process_one(self, ev: Event, decisions: list[Decision], rejects: list[Reject]) -> Observation | None:
        """One event: its account's statistics and rules; the observation for the group stage, if valid."""
        acfg = self.cfg.account
        ts = ev.ts
        if ts < self.now - self.cfg.event_time.max_lateness_s and self._late(ev, rejects):
            return None
        if self.recent.seen(ev.event_id):
            self.duplicates += 1
            return None
        if self.start_ts is None:
            self.start_ts = ts
        wm = self.policy.watermark
        if ts > wm.now:
            wm.now = ts
        if ts > self.now:
            self.now = ts
            if ts >= self._next_expiry:
                self._expire(ts)
        acct = ev.account_id
        net_hit = self._ip_cache.get(ev.ip)
        net, net_id, address = net_hit if net_hit is not None else self.netkeys.lookup(ev.ip)
        created = ev.account_created_ts
        s = self.accounts.get_or_create(acct, ts, created)
        out_tok = ev.output_tokens or 0
        in_tok = ev.input_tokens or 0
        s.update(ts, net_id, out_tok, in_tok, learn=ts >= s.flagged_until)
        age, harvest_ratio, rs, r10, ep_rate = s.signals(ts)

        v = self._view
        v.ev, v.account, v.s, v.ts, v.start_ts = ev, acct, s, ts, self.start_ts
        v.age, v.harvest_ratio, v.rate_2s, v.rate_10s, v.rate_episode = age, harvest_ratio, rs, r10, ep_rate
        policy = self.policy
        for rule in self.rules:
            f = rule.find(v)
            if f is None:
                continue
            name = rule.name
            if policy.would_decide(rule.scope, f.key, name, ts):
                d = policy.decide(rule.scope, f.key, name, ts, f.score, rule.evidence(v))
                if d is not None:
                    decisions.append(d)
            self._flag(s, name, ts)

        if self.scoring and ts - s.scored_ts >= self.score_every_s and s.n >= 3:
            s.scored_ts = ts
            x = features(rs, s.rate_mid(), s.baseline(ts - self.start_ts), harvest_ratio, s.switch_share(),
                         s.timing_cv(), age)
            if self.population is not None:
                self.population.process_one(acct, ts, x, decisions)
            else:
                self.to_score.append((acct, ts, x))

        n = s.n
        networks = s.nets.bit_count()
        return Observation(
            ts, acct, net, net_id, ev.asn, age < acfg.young_age_s, harvest_ratio >= acfg.harvest_ratio,
            self._awakened_rps(s, ts, age, r10), out_tok, in_tok, created, ev.user_agent, ev.prompt_fp,
            ev.payment_fp, harvest_ratio, networks, n,
            networks >= acfg.rotating_min_networks and s.switches >= acfg.rotating_min_switch_share * (n - 1),
            n >= acfg.automated_min_requests and s.timing_cv() <= acfg.automated_max_timing_cv, address,
            s.typical_gap() if n > 1 else 0.0,
        )

    def _late(self, ev: Event, rejects: list[Reject]) -> bool:
        """Whether an event behind detector time by more than the lateness bound is too late to count.

        Partitions are read side by side but not in step (a backlog after an outage, a slow broker):
        lateness is judged against the account's own latest event, so one partition running ahead never
        makes another's events late. An account the stage no longer holds is late only when its state
        would already have expired."""
        ts, lateness = ev.ts, self.cfg.event_time.max_lateness_s
        known = self.accounts.states.get(ev.account_id)
        if known is not None and ts < known.last_ts - lateness:
            rejects.append(Reject("late", f"ts={ts} is {known.last_ts - ts:.0f}s behind its account's "
                                          "latest event", encode_event(ev)))
            return True
        if known is None and ts < self.now - self.cfg.account.idle_expiry_s:
            rejects.append(Reject("late", f"ts={ts} is {self.now - ts:.0f}s behind detector time, "
                                          "beyond the account idle expiry", encode_event(ev)))
            return True
        return False

    def _awakened_rps(self, s: AccountState, ts: float, age: float, r10: float) -> float:
        """The 10 s rate of an old account that just woke up far above its own credible baseline, else 0.

        The baseline is its rate before this episode of activity began (its requests before, over the
        time it was watched before): measured with the episode, a long-run rate would grow with the very
        burst it is to reveal. It stays awakened (and its baseline frozen) for a while, so the network
        has time to count its peers. Only an episode on a network new to the account counts:
        a stolen key is driven from the thief's servers, while a customer's scheduled jobs wake up
        again and again on the same CI or cloud network (their average rate says nothing of that)."""
        ncfg = self.cfg.network
        if age < self.cfg.account.old_age_s or r10 < ncfg.awakened_min_rps:
            return 0.0
        if ts < s.flagged_until:
            return r10
        if not s.ep_new_net:
            return 0.0
        start = self.start_ts if self.start_ts is not None else ts
        created = s.created
        watched = s.ep_start - max(start, created if created == created else start)
        if watched < ncfg.awakened_min_observed_s:
            return 0.0
        before = (s.n - s.ep_n) / watched
        if r10 >= ncfg.awakened_ratio * max(ncfg.awakened_baseline_floor_rps, before):
            s.flagged_until = max(s.flagged_until, ts + ncfg.window_s)
            return r10
        return 0.0

    def reconfigure(self, cfg: DetectorConfig) -> None:
        """Take new thresholds without losing any state (hot reload)."""
        if (cfg.network.ipv4_prefix, cfg.network.ipv6_prefix) != (self.netkeys.v4, self.netkeys.v6):
            self.netkeys = NetworkKeys(cfg.network.ipv4_prefix, cfg.network.ipv6_prefix, cfg.network.ip_cache_size)
            self._ip_cache = self.netkeys.cache
        self.recent.capacity = cfg.event_time.dedupe_ids
        self.netkeys.cache_size = cfg.network.ip_cache_size
        self._configure(cfg)
        self.accounts.cfg = cfg.account
        if self.population is not None:
            self.population.reconfigure(cfg)
        self.policy.reconfigure(cfg.policy, cfg.version)

    def _flag(self, s: AccountState, rule: str, ts: float) -> None:
        """An account a rule fired on: its baseline stops learning while the decision holds."""
        rc = self.cfg.policy.rules[rule]
        if not rc.shadow:
            s.flagged_until = max(s.flagged_until, ts + rc.ttl_s)

    def _expire(self, now: float) -> None:
        self.accounts.expire(now)
        self.policy.expire(now)
        self._next_expiry = now + EXPIRY_EVERY_S
