"""Random draws the traffic models are written in: log-uniform sizes and clipped lognormals.

Real populations are skewed (a few big customers, many small ones), so sizes and
rates are drawn log-uniform or lognormal rather than uniform.
"""

from __future__ import annotations

import math
import random


def log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    """A number between lo and hi whose logarithm is uniform.

    >>> r = random.Random(1)
    >>> all(2.0 <= log_uniform(r, 2.0, 40.0) <= 40.0 for _ in range(1000))
    True
    """
    return lo * (hi / lo) ** rng.random()


def lognormal(rng: random.Random, median: float, sigma: float, lo: float, hi: float) -> float:
    """A lognormal number around median, clipped to [lo, hi].

    >>> r = random.Random(2)
    >>> xs = sorted(lognormal(r, 500.0, 0.7, 1.0, 4000.0) for _ in range(2001))
    >>> 400 < xs[1000] < 600, xs[0] >= 1.0, xs[-1] <= 4000.0
    (True, True, True)
    """
    x = median * math.exp(rng.gauss(0.0, sigma))
    return lo if x < lo else hi if x > hi else x


def lognormal_int(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    """A lognormal count around median, clipped to [lo, hi]."""
    return int(lognormal(rng, median, sigma, lo, hi))


def geometric_count(rng: random.Random, mean: float) -> int:
    """A count >= 1 with the given mean and a long tail, like requests per session."""
    return 1 + int(rng.expovariate(1.0 / max(1e-9, mean - 1.0))) if mean > 1.0 else 1
