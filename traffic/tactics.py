"""How a campaign operates: the adversary's choices as one record (`Tactics`), and draws of them over
the whole range real operations span (`draw_tactics`).

The simulator models the adversary, not one attacker: an operation chooses how many
accounts it runs and how they arrive, how old they are (fresh sign-ups, farmed,
bought or stolen), what it asks (the token ratio of harvesting long answers, or of
long-context extraction), how fast each account goes, which exits it rents and how it
rotates them, how it pays, whether it sweeps a few prompt templates or a whole
dataset, which client it claims to be, and whether it moves to a newly released
model. An adapting attacker changes any of them; a detector is judged on all.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields, replace

from .draws import log_uniform
from .providers import EXIT_KINDS

# account age at its first abusive request, in days
AGES: dict[str, tuple[float, float]] = {
    "fresh": (1.0 / 1440.0, 2.0),  # registered minutes to a couple of days before use
    "farmed": (7.0, 90.0),  # registered weeks ago and kept warm with a little ordinary use
    "bought": (60.0, 1500.0),  # bought with a previous owner's history
    "stolen": (90.0, 2500.0),  # a quiet account whose key leaked; the owner still uses it now and then
}
# how accounts come into use: all at once, over a ramp, joining all along the window, or a fixed
# number at a time, each replaced a moment after its life ends (banned, or used up)
ARRIVALS = ("onset", "ramp", "trickle", "replace")
# how an account uses the exits: one for good, one per session of a few requests, a new one per request
ROTATIONS = ("sticky", "session", "request")
PROMPT_SOURCES = ("templates", "dataset")
UA_POOLS = ("sdk", "browser", "tools", "mixed")

# the adversary's whole choice space: (low, high) of every number draw_tactics draws
RANGES: dict[str, tuple[float, float]] = {
    "accounts": (3, 5000),
    "ramp_s": (10.0, 3600.0),
    "life_s": (60.0, 7200.0),
    "ratio": (0.5, 8.0),
    "output_tokens": (300.0, 4000.0),
    "gap_s": (0.1, 86400.0),
    "pace_spread": (0.0, 1.0),
    "exits": (1, 5000),
    "accounts_per_card": (1.0, 1000.0),
    "templates": (1, 50),
    "template_flips": (0, 8),
}


@dataclass(frozen=True, slots=True)
class Tactics:
    """Every choice one campaign makes; `Campaign` (adversary.py) carries them out.

    accounts is how many accounts the campaign runs (with arrival "replace": how many
    at a time). life_s, when given, is the range an account's working life is drawn
    from (log-uniform); ratio is the median output/input tokens and gap_s the median
    seconds between one account's requests (each account's own median is gap_s times
    e ** N(0, pace_spread): accounts of one operation differ somewhat in pace).
    accounts_per_card 0 means no card on file (a free tier), 1 a card per account.
    fingerprints False means the gateway sends neither prompt_fp nor payment_fp (the
    scenario strips them everywhere).

    >>> Tactics(ratio=0.2)
    Traceback (most recent call last):
    ...
    ValueError: Tactics.ratio: must be within (0.5, 8.0), got 0.2
    """

    accounts: int = 200
    arrival: str = "ramp"
    ramp_s: float = 300.0
    life_s: tuple[float, float] | None = None
    age: tuple[str, ...] = ("fresh",)
    ratio: float = 4.0
    output_tokens: float = 2500.0
    gap_s: float = 15.0
    pace_spread: float = 0.3
    exits: int = 1000
    exit_kind: str = "residential"
    rotation: str = "request"
    accounts_per_card: float = 10.0
    fingerprints: bool = True
    prompts: str = "templates"
    templates: int = 5
    template_flips: int = 4
    user_agents: str = "sdk"
    model: str = "large"
    model_switch: bool = False

    def __post_init__(self) -> None:
        for name, (lo, hi) in RANGES.items():
            v = getattr(self, name)
            if name == "life_s":
                if v is not None and not (lo <= v[0] <= v[1] <= hi):
                    raise ValueError(f"Tactics.life_s: must be None or lo <= hi within {(lo, hi)}, got {v}")
            elif name == "accounts_per_card":
                if v != 0 and not lo <= v <= hi:
                    raise ValueError(f"Tactics.accounts_per_card: must be 0 or within {(lo, hi)}, got {v}")
            elif not lo <= v <= hi:
                raise ValueError(f"Tactics.{name}: must be within {(lo, hi)}, got {v}")
        for name, allowed in (
            ("arrival", ARRIVALS),
            ("exit_kind", EXIT_KINDS),
            ("rotation", ROTATIONS),
            ("prompts", PROMPT_SOURCES),
            ("user_agents", UA_POOLS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Tactics.{name}: must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.age or any(a not in AGES for a in self.age):
            raise ValueError(f"Tactics.age: must be kinds among {tuple(AGES)}, got {self.age}")

    def concurrency(self) -> float:
        """How many of the accounts are at work at a time, on average over the campaign."""
        if self.arrival == "trickle":
            return self.accounts / 2.0
        return float(self.accounts)

    def requests_per_s(self, window_s: float) -> float:
        """The campaign's expected request rate once it is under way, over a window of window_s."""
        busy = (
            1.0 if self.life_s is None or self.arrival == "replace" else min(1.0, _mean_life(self) / window_s)
        )
        return self.concurrency() * busy / self.gap_s

    def describe(self) -> str:
        """One line with every choice, for logs and reports.

        >>> Tactics(ratio=4.04321, life_s=(60.0, 120.5)).describe()[:80]
        'accounts=200, arrival=ramp, ramp_s=300, life_s=(60, 120), age=(fresh), ratio=4.0'
        """
        return ", ".join(f"{f.name}={_short(getattr(self, f.name))}" for f in fields(self))


def _short(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    if isinstance(v, tuple):
        return f"({', '.join(_short(x) for x in v)})"
    return str(v)


def _mean_life(t: Tactics) -> float:
    return math.inf if t.life_s is None else math.sqrt(t.life_s[0] * t.life_s[1])


def draw_tactics(
    rng: random.Random, window_s: float, *, max_rps: float = 40.0, max_accounts: int = 20000
) -> Tactics:
    """Every choice drawn at random over RANGES (sizes and rates log-uniform), then held to a budget:
    at most max_rps requests a second in all (fewer accounts first, then a slower pace) and at most
    max_accounts accounts over the window (longer lives). The budget keeps a file's size sane; it
    moves draws within their ranges, never out of them.

    >>> r = random.Random(5)
    >>> ts = [draw_tactics(r, 3600.0) for _ in range(200)]
    >>> all(t.requests_per_s(3600.0) <= 40.0 + 1e-9 for t in ts)
    True
    >>> len({t.age for t in ts}) > 4 and len({t.exit_kind for t in ts}) == 5
    True
    """
    R = RANGES
    arrival = rng.choice(ARRIVALS)
    kinds = sorted(rng.sample(sorted(AGES), rng.randint(1, 2)))
    life = None
    if arrival == "replace" or rng.random() < 0.3:
        a, b = sorted(log_uniform(rng, *R["life_s"]) for _ in range(2))
        life = (a, b)
    t = Tactics(
        accounts=round(log_uniform(rng, *R["accounts"])),
        arrival=arrival,
        ramp_s=log_uniform(rng, *R["ramp_s"]),
        life_s=life,
        age=tuple(kinds),
        ratio=log_uniform(rng, *R["ratio"]),
        output_tokens=log_uniform(rng, *R["output_tokens"]),
        gap_s=log_uniform(rng, *R["gap_s"]),
        pace_spread=rng.uniform(0.0, 0.6),
        exits=round(log_uniform(rng, *R["exits"])),
        exit_kind=rng.choice(EXIT_KINDS),
        rotation=rng.choice(ROTATIONS),
        accounts_per_card=0.0 if rng.random() < 0.1 else log_uniform(rng, *R["accounts_per_card"]),
        fingerprints=rng.random() < 0.8,
        prompts=rng.choice(PROMPT_SOURCES),
        templates=round(log_uniform(rng, *R["templates"])),
        template_flips=rng.randint(*map(int, R["template_flips"])),
        user_agents=rng.choice(UA_POOLS),
        model_switch=rng.random() < 0.3,
    )
    return within_budget(t, window_s, max_rps=max_rps, max_accounts=max_accounts)


def within_budget(t: Tactics, window_s: float, *, max_rps: float, max_accounts: int) -> Tactics:
    """t with fewer accounts, then a slower pace, until it sends at most max_rps; and with longer lives
    until a replacing campaign uses at most max_accounts accounts over the window.

    >>> t = within_budget(Tactics(accounts=3000, gap_s=1.0), 3600.0, max_rps=30.0, max_accounts=20000)
    >>> t.requests_per_s(3600.0) <= 30.0 + 1e-9, t.accounts >= 10
    (True, True)
    """
    lo_acc = int(RANGES["accounts"][0])
    rate = t.requests_per_s(window_s)
    if rate > max_rps:
        accounts = max(lo_acc, math.ceil(t.accounts / math.sqrt(rate / max_rps)))
        t = replace(t, accounts=accounts)
        rate = t.requests_per_s(window_s)
        if rate > max_rps:
            t = replace(t, gap_s=min(RANGES["gap_s"][1], t.gap_s * rate / max_rps))
    if t.arrival == "replace" and t.life_s is not None:
        used = t.accounts * window_s / _mean_life(t)
        if used > max_accounts:
            k = used / max_accounts
            hi = RANGES["life_s"][1]
            t = replace(t, life_s=(min(hi, t.life_s[0] * k), min(hi, t.life_s[1] * k)))
    return t
