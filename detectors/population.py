"""A population model of account behaviour: one River HalfSpaceTrees shared by all accounts.

A forest per account would weigh megabytes; one forest learns what accounts
look like in general, and each account is scored against it from its compact
state. Features are squashed into [0, 1] with fixed log scales (HalfSpaceTrees
assumes that range), so scaling needs no state and replay equals live.
"""

from __future__ import annotations

import math

from river import anomaly

from detectors.config import PopulationConfig


def _unit_log(x: float, lo: float, hi: float) -> float:
    """``log10(x)`` mapped from [lo, hi] (decades) onto [0, 1], clipped; non-finite maps to 0."""
    if not x > 0.0:  # also NaN
        return 0.0
    if x == math.inf:
        return 1.0
    v = (math.log10(x) - lo) / (hi - lo)
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def _unit(x: float) -> float:
    return x if 0.0 <= x <= 1.0 else (1.0 if x > 1.0 else 0.0)  # NaN fails both tests: 0


def features(rate_short: float, rate_mid: float, baseline: float, harvest: float, switch_share: float,
             timing_cv: float, age_s: float) -> dict[str, float]:
    """An account's state as a point in the unit cube.

    >>> f = features(1.0, 0.5, 0.1, 2.0, 0.0, 0.3, 86400.0)
    >>> all(0.0 <= v <= 1.0 for v in f.values())
    True
    """
    return {
        "rate_short": _unit_log(rate_short, -3.0, 2.0),
        "rate_mid": _unit_log(rate_mid, -3.0, 2.0),
        "rate_vs_baseline": _unit_log((max(rate_mid, 0.0) + 1e-3) / (max(baseline, 0.0) + 1e-3), -2.0, 3.0),
        "harvest": _unit_log(harvest, -2.0, 1.5),
        "switch_share": _unit(switch_share),
        "timing_cv": _unit(timing_cv / 3.0),
        "age": _unit_log(age_s, 2.0, 9.0),
    }


class PopulationModel:
    """Shared HalfSpaceTrees: ``learn_one`` and ``score_one`` on feature dicts.

    Scores are in [0, 1], higher is more unusual. Until ``warmup_samples`` have
    been learnt the score is 0, so a cold model never flags anyone.

    >>> from detectors.config import PopulationConfig
    >>> m = PopulationModel(PopulationConfig(warmup_samples=50, n_trees=3, height=4, window_size=20))
    >>> normal = features(0.1, 0.1, 0.1, 0.5, 0.0, 1.0, 1e7)
    >>> for _ in range(200):
    ...     m.learn_one(normal)
    >>> odd = features(30.0, 20.0, 0.01, 20.0, 1.0, 0.0, 100.0)
    >>> m.score_one(odd) > m.score_one(normal)
    True
    """

    def __init__(self, cfg: PopulationConfig):
        self.cfg = cfg
        self.model = anomaly.HalfSpaceTrees(n_trees=cfg.n_trees, height=cfg.height, window_size=cfg.window_size,
                                            seed=cfg.seed)
        self.learnt = 0

    def learn_one(self, x: dict[str, float]) -> None:
        self.model.learn_one(x)
        self.learnt += 1

    def score_one(self, x: dict[str, float]) -> float:
        if self.learnt < self.cfg.warmup_samples:
            return 0.0
        return float(self.model.score_one(x))
