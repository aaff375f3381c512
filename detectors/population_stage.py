"""The population stage: one shared River HalfSpaceTrees scoring every account's feature vector.

A worker's account stage runs one per account partition in line; replay's ``Detector`` runs one for
all accounts as a stage of its own, fed the feature vectors the account stage leaves in ``to_score``.
"""

from __future__ import annotations

import math
from typing import Any

from detectors.config import DetectorConfig
from detectors.policy import Decision, Policy
from detectors.population import PopulationModel
from detectors.rules import RULES
from detectors.rules.base import Rule

EXPIRY_EVERY_S = 60.0


class PopulationView:
    """One account's feature vector and its score, as the population rules read them."""

    __slots__ = ("account", "ts", "x", "score")

    def __init__(self) -> None:
        self.account = ""
        self.ts = self.score = 0.0
        self.x: dict[str, float] = {}


class PopulationStage:
    """The shared population model as a stage: accounts' feature vectors in event order, each scored
    and learnt, then the population rules asked about the score (``detectors/rules/population_outlier.py``
    shows it on a tiny stream).
    """

    def __init__(self, cfg: DetectorConfig, policy: Policy):
        self.policy = policy
        self.model = PopulationModel(cfg.section("population"))
        self._next_expiry = -math.inf
        self._view = PopulationView()
        self._configure(cfg)

    def _configure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.rules: list[Rule[Any]] = [r(cfg.section(r.section)) for r in RULES if r.stage == "population"]

    def process_one(self, account: str, ts: float, x: dict[str, float], decisions: list[Decision]) -> None:
        if ts >= self._next_expiry:  # a policy of its own (replay) expires here; a shared one, twice: harmless
            self.policy.expire(ts)
            self._next_expiry = ts + EXPIRY_EVERY_S
        self.policy.watermark.advance(ts)
        v = self._view
        v.account, v.ts, v.x, v.score = account, ts, x, self.model.score_then_learn(x)
        policy = self.policy
        for rule in self.rules:
            f = rule.find(v)
            if f is not None and policy.would_decide(rule.scope, f.key, rule.name, ts):
                d = policy.decide(rule.scope, f.key, rule.name, ts, f.score, rule.evidence(v))
                if d is not None:
                    decisions.append(d)

    def reconfigure(self, cfg: DetectorConfig) -> None:
        self._configure(cfg)
        self.policy.reconfigure(cfg.policy, cfg.version)
