"""How busy honest users are at a given moment: a daily curve times an optional launch-day surge.

Attackers ignore the clock, honest users do not, so benign rates are modulated
and attack rates are not.
"""

from __future__ import annotations

import math

DAY = 86400.0


class Rhythm:
    """A diurnal curve peaking at peak_hour (UTC) with the given amplitude, times a surge window.

    >>> r = Rhythm(peak_hour=14.0, amplitude=0.5, surge=(100.0, 200.0, 3.0))
    >>> round(r.diurnal(14 * 3600.0), 2), round(r.diurnal(2 * 3600.0), 2)
    (1.5, 0.5)
    >>> r.surge(150.0), r.surge(250.0)
    (3.0, 1.0)
    """

    def __init__(
        self, peak_hour: float = 15.0, amplitude: float = 0.5, surge: tuple[float, float, float] | None = None
    ) -> None:
        self.amplitude = amplitude
        self._peak = peak_hour * 3600.0
        self._surge = surge
        self.max_surge = surge[2] if surge else 1.0

    def diurnal(self, ts: float) -> float:
        """Relative rate of people at ts, mean 1 over a day."""
        return 1.0 + self.amplitude * math.cos(2.0 * math.pi * (ts - self._peak) / DAY)

    def office(self, ts: float) -> float:
        """Relative rate of office workers: a deeper curve, nearly idle at night."""
        return max(0.05, 1.0 + 0.95 * math.cos(2.0 * math.pi * (ts - self._peak) / DAY))

    def surge(self, ts: float) -> float:
        """Launch-day multiplier of every benign rate at ts (1 outside the surge)."""
        s = self._surge
        return s[2] if s is not None and s[0] <= ts < s[1] else 1.0

    def people(self, ts: float) -> float:
        """Relative session rate of people: diurnal times surge."""
        return self.diurnal(ts) * self.surge(ts)

    def workers(self, ts: float) -> float:
        """Relative session rate of office workers: office curve times surge."""
        return self.office(ts) * self.surge(ts)

    def machines(self, ts: float, coupling: float) -> float:
        """Relative rate of a back-end whose load follows its users partly (coupling 0..1)."""
        return (1.0 + coupling * (self.diurnal(ts) - 1.0)) * self.surge(ts)

    @property
    def max_people(self) -> float:
        return (1.0 + self.amplitude) * self.max_surge

    @property
    def max_workers(self) -> float:
        return 1.95 * self.max_surge
