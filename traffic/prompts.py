"""What honest people ask: a catalog of shared prompts with a Zipf popularity curve, and each
person's habits (how often they use a shared prompt, their own recurring ones, private ones).

Honest prompts are not uniformly random. The docs' quick-start example, "summarise
this", "fix this error", a tutorial's exercises and popular templates are sent by
very many people, word for word or with a few words changed; prompt popularity,
like query popularity in web search logs, falls off roughly as a power of its rank.
Each person also reuses a few prompts of their own (a saved template, a daily
task) and writes many one-off ones. So identical and near-identical SimHashes are
common among honest accounts, and shared content alone does not mean a campaign.
"""

from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate

from .draws import log_uniform
from .fingerprints import flip, random_fp, to_hex, up_to


class PromptCatalog:
    """Prompts many people send, ranked by popularity (weight 1 / rank ** exponent).

    A quick-start prompt is copied verbatim (the same SimHash every time); a template
    has variables filled in (a few bits flipped).

    >>> cat = PromptCatalog(random.Random(1), size=500)
    >>> r = random.Random(2)
    >>> ranks = [cat.rank(r) for _ in range(2000)]
    >>> ranks.count(0) > 10 * ranks.count(20) > 0   # the head is sent far more often than the tail
    True
    >>> len(cat.draw(r))
    16
    """

    def __init__(self, rng: random.Random, *, size: int = 3000, exponent: float = 1.05) -> None:
        self._centres = [random_fp(rng) for _ in range(size)]
        # most popular prompts are fixed examples; further down the tail, more are templates
        self._flips = [0 if rng.random() < 0.5 else rng.randint(1, 5) for _ in range(size)]
        self._cum = list(accumulate(1.0 / (rank + 1) ** exponent for rank in range(size)))
        self._total = self._cum[-1]

    def entry(self, rank: int) -> str:
        """The prompt at this popularity rank, as sent without changes."""
        return to_hex(self._centres[rank])

    def rank(self, rng: random.Random) -> int:
        """A popularity rank, drawn by popularity."""
        return bisect(self._cum, rng.random() * self._total)

    def draw(self, rng: random.Random) -> str:
        """A shared prompt, drawn by popularity, with its variables filled in."""
        i = self.rank(rng)
        k = self._flips[i]
        return to_hex(flip(self._centres[i], up_to(rng, k), rng) if k else self._centres[i])

    def habit(self, rng: random.Random, *, shared: tuple[float, float] = (0.03, 0.5)) -> PromptHabit:
        """One person's prompt habit, drawn from rng (shared: the range of their share of shared prompts)."""
        own = [random_fp(rng) for _ in range(rng.randint(0, 4))]
        return PromptHabit(self, log_uniform(rng, *shared), rng.uniform(0.0, 0.5) if own else 0.0, own)


class PromptHabit:
    """How one person writes prompts: a share from the catalog, a share of their own recurring
    prompts (a word or two changed each time), the rest private one-offs. Called with an rng.

    >>> cat = PromptCatalog(random.Random(1), size=50)
    >>> h = PromptHabit(cat, shared=0.0, own_share=1.0, own=[0])
    >>> r = random.Random(3)
    >>> max(int(h(r), 16).bit_count() for _ in range(100)) <= 2
    True
    """

    __slots__ = ("_catalog", "_shared", "_own_to", "_own")

    def __init__(self, catalog: PromptCatalog, shared: float, own_share: float, own: list[int]) -> None:
        self._catalog, self._shared, self._own = catalog, shared, own
        self._own_to = shared + own_share

    def __call__(self, rng: random.Random) -> str:
        x = rng.random()
        if x < self._shared:
            return self._catalog.draw(rng)
        if x < self._own_to:
            own = self._own
            return to_hex(flip(own[int(rng.random() * len(own))], up_to(rng, 2), rng))
        return to_hex(random_fp(rng))
