"""The setting every actor of one scenario is built in: time window, seeds, rhythm, addresses and ids."""

from __future__ import annotations

import random
from functools import cached_property

from .accounts import AccountIds
from .addresses import Internet
from .clients import Release
from .prompts import PromptCatalog
from .rhythm import DAY, Rhythm


class World:
    """Shared state of one scenario build: [t0, t1), a rhythm, an address allocator, an id source,
    the catalog of prompts people share, a model release if the scenario has one, and whether the
    gateway sends prompt and payment fingerprints.

    Every actor draws from its own named rng (`world.rng("person", 17, "plan")`),
    so adding an actor does not reshuffle the others, and a plan (accounts,
    schedules) and its events come from separate streams: labels are known
    without generating a single event.

    >>> w = World(seed=1, t0=0.0, duration=60.0)
    >>> w.rng("a", 1).random() == World(seed=1, t0=0.0, duration=60.0).rng("a", 1).random()
    True
    """

    def __init__(self, seed: int, t0: float, duration: float, rhythm: Rhythm | None = None) -> None:
        self.seed = seed
        self.t0 = t0
        self.t1 = t0 + duration
        self.duration = duration
        self.rhythm = rhythm or Rhythm()
        self.internet = Internet(self.rng("internet"))
        self.ids = AccountIds(self.rng("ids"))
        self.release: Release | None = None
        self.fingerprints = True

    @cached_property
    def catalog(self) -> PromptCatalog:
        """The prompts many people send (quick-starts, templates), by popularity."""
        return PromptCatalog(self.rng("prompt_catalog"))

    def rng(self, *parts: object) -> random.Random:
        # string seeds go through SHA-512 in random.seed, so they are stable across runs and platforms
        return random.Random("/".join(str(p) for p in (self.seed, *parts)))

    def days_ago(self, days: float) -> float:
        """The Unix time `days` before t0, rounded to the millisecond."""
        return round(self.t0 - days * DAY, 3)
