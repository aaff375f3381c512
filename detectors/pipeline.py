"""The detector: events in, decisions out; the one function replay and the workers share.

Three kinds of stage, because their state is keyed differently:

- ``AccountStage`` (partitioned by account): event time, duplicates, lateness, per-account
  statistics and the account rules. It hands each event on as an ``Observation`` carrying the
  account's features.
- ``PopulationStage``: the shared population model (a River HalfSpaceTrees) and its rules.
- ``GroupStage`` (partitioned by group key): per-network, per-ASN and per-cluster statistics and
  their rules, visited in the order ``detectors.routing`` gives.

``Detector`` chains them in one process (replay, tests), as a worker with one partition would.
"""

from __future__ import annotations

from collections.abc import Iterable

from detectors.account_stage import AccountStage
from detectors.config import DetectorConfig
from detectors.events import Event, Reject
from detectors.group_stage import GroupStage
from detectors.policy import Decision, DecisionLedger, Policy, Watermark
from detectors.population_stage import PopulationStage
from detectors.routing import GroupRouter


class Detector:
    """All stages in one process: ``process(events)`` returns decisions and rejections.

    Each stage has its own policy and the decisions of all pass one ledger of what is published, as
    in a worker, whose stages run apart: replay says what the workers would say. The population
    model is one for all accounts, scored in event order between an event's account rules and its
    group rules.

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
        wm = self.watermark = Watermark()  # every stage's decisions carry the latest time read by any
        self.accounts = AccountStage(cfg, Policy(cfg.policy, cfg.version, wm), score_population=False)
        self.population = PopulationStage(cfg, Policy(cfg.policy, cfg.version, wm))
        self.groups = GroupStage(cfg, Policy(cfg.policy, cfg.version, wm))
        self.router = GroupRouter(cfg.cluster, partitions=1)
        self.published = DecisionLedger(cfg.policy.refresh_before_expiry_share)

    def process(self, events: Iterable[Event]) -> tuple[list[Decision], list[Reject]]:
        # Event by event through the stages, so what one stage decides never depends on batch size.
        decisions: list[Decision] = []
        rejects: list[Reject] = []
        account_one, population_one, to_score = self.accounts.process_one, self.population.process_one, \
            self.accounts.to_score
        groups_one, groups = self.router.visit_all_here, self.groups
        for ev in events:
            o = account_one(ev, decisions, rejects)
            if to_score:
                for account, ts, x in to_score:
                    population_one(account, ts, x, decisions)
                to_score.clear()
            if o is not None:
                groups_one(groups, o, decisions)
        return self.publish(decisions), rejects

    def publish(self, decisions: list[Decision]) -> list[Decision]:
        return publish(self.published, decisions)


def publish(published: DecisionLedger, decisions: list[Decision]) -> list[Decision]:
    """Of the stages' decisions, in event order, those that add to what ``published`` holds."""
    admit = published.admit
    return [d for d in decisions if admit(d.scope, d.key, d.action, d.ts, d.ttl_s)]
