"""Prompt and payment fingerprints: 64-bit SimHash-like prompt_fp values and opaque payment_fp strings.

The gateway sends a SimHash of the normalised prompt, so near-identical prompts
(one template, a few words changed) land a few bits apart. A campaign sweeping a
handful of topics therefore shows up as a few tight clusters in Hamming space,
while honest people's prompts are spread uniformly.
"""

from __future__ import annotations

import random

_BITS = tuple(1 << i for i in range(64))


def random_fp(rng: random.Random) -> int:
    """A uniformly random 64-bit fingerprint: an unrelated prompt."""
    return rng.getrandbits(64)


def flip(fp: int, k: int, rng: random.Random) -> int:
    """fp with k distinct random bits flipped: a near-identical prompt.

    >>> r = random.Random(3)
    >>> hamming(to_hex(flip(0, 4, r)), to_hex(0))
    4
    """
    if k <= 0:
        return fp
    if k > 16:
        for b in rng.sample(_BITS, k):
            fp ^= b
        return fp
    # a few bits: draw positions until k distinct ones are set (much faster than sample for small k)
    mask, bits = 0, rng.getrandbits
    while mask.bit_count() < k:
        mask |= 1 << bits(6)
    return fp ^ mask


def up_to(rng: random.Random, k: int) -> int:
    """A whole number from 0 to k, uniformly (randint's draw, at a fraction of its cost).

    >>> r = random.Random(1)
    >>> sorted({up_to(r, 3) for _ in range(200)})
    [0, 1, 2, 3]
    """
    return int(rng.random() * (k + 1))


def to_hex(fp: int) -> str:
    """The wire form of a fingerprint: 16 lowercase hex digits.

    >>> to_hex(255)
    '00000000000000ff'
    """
    return f"{fp:016x}"


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex fingerprints."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class Topics:
    """A small set of prompt templates (cluster centres); each draw is one centre with a few bits flipped.

    >>> t = Topics(random.Random(4), n=3, max_flips=2)
    >>> fp = t.sample(random.Random(5))
    >>> min(hamming(fp, to_hex(c)) for c in t.centres) <= 2
    True
    """

    def __init__(self, rng: random.Random, n: int, max_flips: int) -> None:
        self.centres = [random_fp(rng) for _ in range(n)]
        self.max_flips = max_flips

    def sample(self, rng: random.Random) -> str:
        centres = self.centres
        return to_hex(flip(centres[int(rng.random() * len(centres))], up_to(rng, self.max_flips), rng))


def payment_fp(rng: random.Random) -> str:
    """An opaque payment-instrument fingerprint, e.g. 'pay_3f09a1c2de'."""
    return f"pay_{rng.getrandbits(40):010x}"


class SharedPayments:
    """Hands out payment fingerprints so that a few accounts share each (resold or stolen cards).

    >>> p = SharedPayments(random.Random(6), per_card=(3, 3), solo_share=0.0)
    >>> fps = [p.next() for _ in range(6)]
    >>> len(set(fps))
    2
    """

    def __init__(
        self, rng: random.Random, per_card: tuple[int, int] = (2, 6), solo_share: float = 0.2
    ) -> None:
        self._rng = rng
        self._per_card = per_card
        self._solo = solo_share
        self._current = ""
        self._left = 0

    def next(self) -> str:
        rng = self._rng
        if rng.random() < self._solo:
            return payment_fp(rng)
        if self._left <= 0:
            self._current = payment_fp(rng)
            self._left = rng.randint(*self._per_card)
        self._left -= 1
        return self._current
