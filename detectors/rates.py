"""Exponentially decayed event counts: rates over several windows in constant memory.

A decayed count ``c`` with half-life ``h`` estimates a rate as ``c * ln2 / h``.
Right after watching starts the estimate is biased low, so ``rate`` can divide
by the share of the window actually observed (the usual EW bias correction):
an account first seen long after watching began had a real baseline of zero,
one first seen at start-up has an unknown baseline, and the correction tells
the two apart.
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def decay(count: float, dt: float, half_life: float) -> float:
    """``count`` after ``dt`` seconds; a negative ``dt`` (a late event) does not decay.

    >>> decay(8.0, 10.0, 10.0)
    4.0
    >>> decay(8.0, -3.0, 10.0)
    8.0
    """
    if dt <= 0.0:
        return count
    return count * math.exp(-dt * LN2 / half_life)


def rate(count: float, half_life: float, observed_s: float | None = None) -> float:
    """Events per second behind a decayed ``count``; bias-corrected for a short ``observed_s``.

    >>> round(rate(10 * 10 / LN2, 10.0), 3)        # steady 10/s for a long time
    10.0
    >>> c = 0.0
    >>> for _ in range(50):                          # 5 s of 10/s, watched 5 s
    ...     c = decay(c, 0.1, 600.0) + 1
    >>> round(rate(c, 600.0), 2), round(rate(c, 600.0, observed_s=5.0), 1)
    (0.06, 10.0)
    """
    r = count * LN2 / half_life
    if observed_s is not None and observed_s > 0.0:
        seen = 1.0 - math.exp(-observed_s * LN2 / half_life)
        if seen > 1e-9:
            r /= seen
    return r


class AccountRates:
    """Request and token rates of one key over several windows, in event time.

    Decays exponentially, so memory is constant per key, and a late event
    counts with its own timestamp: it adds what it would weigh now had it come
    in time, so the counts do not depend on arrival order.

    >>> r = AccountRates(half_lives=(10.0, 600.0))
    >>> for t in range(20):
    ...     r.update(ts=float(t), tokens=100)
    >>> r.rate(10.0) > r.rate(600.0)   # the short window sees the new burst first
    True
    """

    __slots__ = ("half_lives", "counts", "tokens", "last_ts")

    def __init__(self, half_lives: tuple[float, ...] = (2.0, 10.0, 60.0, 1800.0)):
        self.half_lives = half_lives
        self.counts = [0.0] * len(half_lives)
        self.tokens = [0.0] * len(half_lives)
        self.last_ts: float | None = None

    def update(self, ts: float, tokens: int = 0) -> None:
        dt = 0.0 if self.last_ts is None else ts - self.last_ts
        for i, h in enumerate(self.half_lives):
            w = 1.0 if dt >= 0.0 else math.exp(dt * LN2 / h)  # a late event weighs what it would now
            self.counts[i] = decay(self.counts[i], dt, h) + w
            self.tokens[i] = decay(self.tokens[i], dt, h) + tokens * w
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts

    def rate(self, half_life: float, observed_s: float | None = None) -> float:
        return rate(self.counts[self.half_lives.index(half_life)], half_life, observed_s)
