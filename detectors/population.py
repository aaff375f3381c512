"""A population model of account behaviour: one River HalfSpaceTrees shared by all accounts.

A forest per account would weigh megabytes; one forest learns what accounts
look like in general, and each account is scored against it from its compact
state. Features are squashed into [0, 1] with fixed log scales (HalfSpaceTrees
assumes that range), so scaling needs no state and replay equals live.
"""

from __future__ import annotations

import math

from river import anomaly

from detectors.rules.population_outlier import PopulationThresholds


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


FEATURES = ("rate_short", "rate_mid", "rate_vs_baseline", "harvest", "switch_share", "timing_cv", "age")


def features(rate_short: float, rate_mid: float, baseline: float, harvest: float, switch_share: float,
             timing_cv: float, age_s: float) -> dict[str, float]:
    """An account's state as a point in the unit cube.

    >>> f = features(1.0, 0.5, 0.1, 2.0, 0.0, 0.3, 86400.0)
    >>> all(0.0 <= v <= 1.0 for v in f.values()), tuple(f) == FEATURES
    (True, True)
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

    >>> from detectors.rules.population_outlier import PopulationThresholds
    >>> m = PopulationModel(PopulationThresholds(warmup_samples=50, n_trees=3, height=4, window_size=20))
    >>> normal = features(0.1, 0.1, 0.1, 0.5, 0.0, 1.0, 1e7)
    >>> for _ in range(200):
    ...     m.learn_one(normal)
    >>> odd = features(30.0, 20.0, 0.01, 20.0, 1.0, 0.0, 100.0)
    >>> m.score_one(odd) > m.score_one(normal)
    True
    """

    def __init__(self, cfg: PopulationThresholds):
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

    def score_then_learn(self, x: dict[str, float]) -> float:
        """``score_one(x)``, then ``learn_one(x)``: the same result, in one walk down each tree.

        River walks every tree twice, once to score and once to learn. With every feature present
        (``features`` gives all of them) both walks take the same path, and scoring reads only the
        masses of the reference window that learning leaves alone, so one walk does both. It reads
        River's trees directly (river is pinned; a test holds it equal to the two calls).

        >>> from detectors.rules.population_outlier import PopulationThresholds
        >>> cfg = PopulationThresholds(warmup_samples=30, n_trees=3, height=4, window_size=20)
        >>> one, two = PopulationModel(cfg), PopulationModel(cfg)
        >>> xs = [features(i % 7, 0.1 * (i % 5), 0.1, 0.5 * (i % 3), 0.0, 1.0, 1e7) for i in range(100)]
        >>> walked = [one.score_then_learn(x) for x in xs]
        >>> called = []
        >>> for x in xs:
        ...     called.append(two.score_one(x))
        ...     two.learn_one(x)
        >>> walked == called, max(walked) > 0.0
        (True, True)
        """
        m = self.model
        if not m.trees:  # the trees are built by the first learn
            score = self.score_one(x)
            self.learn_one(x)
            return score
        scoring = self.learnt >= self.cfg.warmup_samples and not m._first_window
        size_limit = 0.1 * m.window_size
        height = m.height
        total = 0  # masses are integers: the sum is exact, in any order
        for node in m.trees:
            depth_pow = 1
            live = scoring
            for _ in range(height):
                if live:
                    r = node.r_mass
                    total += r * depth_pow
                    if r < size_limit:
                        live = False  # River's score stops here; learning goes on to the leaf
                    depth_pow <<= 1
                node.l_mass += 1
                c = node.children
                node = c[0] if x[node.feature] < node.threshold else c[1]
            if live:
                total += node.r_mass * depth_pow
            node.l_mass += 1
        m.counter += 1
        if m.counter == m.window_size:  # River's pivot: the latest window becomes the reference
            for nodes in m._tree_nodes:
                for n in nodes:
                    n.r_mass = n.l_mass
                    n.l_mass = 0
            m._first_window = False
            m.counter = 0
        self.learnt += 1
        return float(1 - total / m._max_score) if scoring else 0.0
