"""What requests look like from the client side: user agents, models and token mixes."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .draws import log_uniform, lognormal, lognormal_int

BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
)
SDK_UAS = (
    "sdk-python/0.42.0",
    "sdk-python/0.40.1",
    "sdk-python/0.39.0",
    "sdk-typescript/0.33.0",
    "sdk-typescript/0.32.1",
    "sdk-go/0.9.2",
    "sdk-java/1.4.0",
)
TOOL_UAS = (
    "curl/8.5.0",
    "curl/7.81.0",
    "python-httpx/0.28.1",
    "python-requests/2.32.3",
    "node-fetch/1.0",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
)
BACKEND_UAS = SDK_UAS + TOOL_UAS[2:]

MODELS = ("large", "medium", "small")
_MODEL_WEIGHTS = (0.5, 0.35, 0.15)


@dataclass(frozen=True, slots=True)
class Release:
    """A model released at ts: honest users adopt it one by one, over hours to weeks; some never do.

    People try a new model when they hear of it, so adoption spreads from the release
    on; a campaign that needs the new model's answers switches all its accounts at once.

    >>> rel = Release("large-2", 1000.0)
    >>> r = random.Random(1)
    >>> times = [rel.adoption(r) for _ in range(1000)]
    >>> min(times) >= 1000.0, 0.1 < sum(t < 1000.0 + 6 * 3600 for t in times) / 1000 < 0.6
    (True, True)
    """

    model: str
    ts: float

    def adoption(self, rng: random.Random) -> float:
        """When one honest user starts asking for the new model (inf: not this month)."""
        if rng.random() < 0.3:
            return math.inf
        return self.ts + log_uniform(rng, 300.0, 30 * 86400.0)


def human_ua(rng: random.Random) -> str:
    """The user agent of a person: mostly a browser-based app, else an SDK script or curl."""
    x = rng.random()
    pool = BROWSER_UAS if x < 0.5 else SDK_UAS if x < 0.8 else TOOL_UAS
    return rng.choice(pool)


def pick_model(rng: random.Random) -> str:
    """A model name, weighted the way a mixed customer base asks for them."""
    return rng.choices(MODELS, _MODEL_WEIGHTS)[0]


def human_tokens(rng: random.Random) -> tuple[int, int]:
    """(input, output) tokens of an ordinary chat-like request.

    >>> r = random.Random(1)
    >>> all(0 <= i and 0 <= o for i, o in (human_tokens(r) for _ in range(100)))
    True
    """
    return lognormal_int(rng, 900.0, 0.6, 20, 30000), lognormal_int(rng, 400.0, 0.75, 1, 4096)


def harvest_tokens(rng: random.Random) -> tuple[int, int]:
    """(input, output) tokens of a distillation request: modest question, long answer."""
    return int(rng.uniform(300.0, 900.0)), int(lognormal(rng, 2900.0, 0.2, 2000.0, 4000.0))


def long_answer_tokens(rng: random.Random) -> tuple[int, int]:
    """(input, output) tokens of someone who asks for a long answer: an essay, a whole program, a report.

    >>> r = random.Random(2)
    >>> sum(o / i for i, o in (long_answer_tokens(r) for _ in range(1000))) / 1000 > 3
    True
    """
    return lognormal_int(rng, 300.0, 0.7, 15, 4000), lognormal_int(rng, 2400.0, 0.4, 600, 8192)
