"""Population outliers: an account whose features are rare among all accounts (River HalfSpaceTrees).

One forest learns what accounts look like in general; an account far from everything it has seen is
flagged for a person to look at, never enforced: unusual is not abusive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from detectors.rules.base import Finding, Rule, RuleConfig, Strict

if TYPE_CHECKING:
    from detectors.population_stage import PopulationView


class PopulationThresholds(Strict):
    """River HalfSpaceTrees over scaled per-account features, shared by all accounts."""

    enabled: bool = True
    n_trees: int = Field(10, ge=1, le=50)
    height: int = Field(8, ge=2, le=12)
    window_size: int = Field(250, ge=10)
    review_score: float = Field(0.97, gt=0, le=1)
    score_every_s: float = Field(60.0, gt=0, description="an account is scored at most this often")
    warmup_samples: int = Field(2000, ge=0)
    seed: int = 42


class PopulationOutlier(Rule[PopulationThresholds]):
    """An account scored at or above ``review_score`` by the shared model.

    >>> from detectors.population import features
    >>> from detectors.tiny import population_stage
    >>> stage, decisions = population_stage({"population": {"warmup_samples": 50, "window_size": 50}})
    >>> for i in range(200):
    ...     stage.process_one(f"a{i}", float(i), features(0.1, 0.1, 0.1, 0.5, 0.0, 1.0, 1e7), decisions)
    >>> stage.process_one("odd", 200.0, features(30.0, 20.0, 0.01, 20.0, 1.0, 0.0, 100.0), decisions)
    >>> [(d.key, d.reason, d.action) for d in decisions]
    [('odd', 'population_outlier', 'review')]
    """

    name = "population_outlier"
    scope = "account"
    stage = "population"
    order = 10
    section = "population"
    Thresholds = PopulationThresholds
    default = RuleConfig(action="review", ttl_s=3600.0)
    summary = "uncertain: a River HalfSpaceTrees outlier among all accounts' behaviour (never enforced)"

    def find(self, v: PopulationView) -> Finding | None:
        return Finding(v.account, v.score) if v.score >= self.t.review_score else None

    def evidence(self, v: PopulationView) -> dict[str, Any]:
        return {k: round(x, 3) for k, x in v.x.items()}
