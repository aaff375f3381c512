"""Named campaigns: a coordinated campaign with every signal, the same campaign with one signal taken
away, a modest burst of stolen keys, glacial campaigns and a campaign drawn at random.

Each variant draws its Tactics from its seed's rng, within ranges of its own, so two
seeds of one variant are two incidents of the same kind. A variant that takes a
signal away draws the coordinated campaign first and changes only that signal.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from .draws import log_uniform
from .tactics import Tactics, draw_tactics

HOUR = 3600.0


def _n(x: float, k: float, floor: int = 10) -> int:
    return max(floor, round(x * k))


def coordinated(rng: random.Random, window_s: float, k: float) -> Tactics:
    """A distillation campaign with every signal: a few hundred fresh accounts ramping up together,
    long answers (output 3-6 times the input), a request every 10-30 s each, every request through
    another exit of a residential proxy pool, a card for 5-20 accounts, a few prompt templates,
    SDK user agents."""
    return Tactics(
        accounts=_n(log_uniform(rng, 100, 300), k),
        arrival="ramp",
        ramp_s=rng.uniform(60.0, 600.0),
        age=("fresh",),
        ratio=rng.uniform(3.0, 6.0),
        output_tokens=rng.uniform(2000.0, 3500.0),
        gap_s=rng.uniform(10.0, 30.0),
        exits=round(log_uniform(rng, 1000, 3000)),
        exit_kind="residential",
        rotation="request",
        accounts_per_card=rng.uniform(5.0, 20.0),
        prompts="templates",
        templates=rng.randint(3, 8),
        template_flips=4,
        user_agents="sdk",
    )


def aged(rng: random.Random, window_s: float, k: float) -> Tactics:
    """Old accounts: farmed for weeks with a little ordinary use, or bought with a previous owner's history."""
    return replace(coordinated(rng, window_s, k), age=("farmed", "bought"))


def low_ratio(rng: random.Random, window_s: float, k: float) -> Tactics:
    """Long-context extraction: long documents in, answers about as long (output/input 0.5-1.5)."""
    return replace(
        coordinated(rng, window_s, k), ratio=rng.uniform(0.5, 1.5), output_tokens=rng.uniform(1500.0, 3500.0)
    )


def own_cards(rng: random.Random, window_s: float, k: float) -> Tactics:
    """A card of its own for every account (stolen or virtual cards)."""
    return replace(coordinated(rng, window_s, k), accounts_per_card=1.0)


def own_exits(rng: random.Random, window_s: float, k: float) -> Tactics:
    """One exit per account for its whole life (a proxy's sticky sessions), no two accounts on one exit."""
    t = coordinated(rng, window_s, k)
    return replace(t, exits=t.accounts, rotation="sticky")


def no_fingerprints(rng: random.Random, window_s: float, k: float) -> Tactics:
    """A gateway that sends neither prompt_fp nor payment_fp."""
    return replace(coordinated(rng, window_s, k), fingerprints=False)


def dataset_prompts(rng: random.Random, window_s: float, k: float) -> Tactics:
    """Prompts from a dataset of distinct questions instead of a few templates: no shared SimHash."""
    return replace(coordinated(rng, window_s, k), prompts="dataset")


def slow(rng: random.Random, window_s: float, k: float) -> Tactics:
    """A request every 5-30 minutes per account; four times the accounts make up for part of the pace."""
    t = coordinated(rng, window_s, k)
    return replace(t, accounts=4 * t.accounts, gap_s=log_uniform(rng, 300.0, 1800.0))


def stolen_modest(rng: random.Random, window_s: float, k: float) -> Tactics:
    """Stolen keys of quiet old accounts, each run at a modest 3-6 requests a second for a few minutes
    from a handful of rented servers on a new network, with a varied workload (resold access) and the
    owners' own cards."""
    return Tactics(
        accounts=_n(log_uniform(rng, 5, 30), k, floor=3),
        arrival="ramp",
        ramp_s=rng.uniform(30.0, 600.0),
        life_s=(120.0, 900.0),
        age=("stolen",),
        ratio=rng.uniform(0.5, 1.2),
        output_tokens=rng.uniform(300.0, 800.0),
        gap_s=1.0 / rng.uniform(3.0, 6.0),
        pace_spread=0.0,  # one reseller's tool drives every key at the same pace
        exits=rng.randint(2, 8),
        exit_kind="datacenter",
        rotation="request",
        accounts_per_card=1.0,
        prompts="dataset",
        user_agents="tools",
    )


def glacial(rng: random.Random, window_s: float, k: float, *, shared_cards: bool) -> Tactics:
    """Thousands of fresh accounts joining all along, each about one request an hour, each request
    through another exit of a proxy pool, all switching to a newly released model at once; a few
    hundred cards among them, or a card each."""
    accounts = _n(log_uniform(rng, 2000, 4000), k)
    return Tactics(
        accounts=accounts,
        arrival="trickle",
        age=("fresh",),
        ratio=rng.uniform(3.0, 6.0),
        output_tokens=rng.uniform(2000.0, 3500.0),
        gap_s=HOUR * rng.uniform(0.8, 1.25),
        pace_spread=0.2,
        exits=round(log_uniform(rng, 2000, 5000)),
        exit_kind="residential",
        rotation="request",
        accounts_per_card=max(1.0, accounts / rng.uniform(200.0, 400.0)) if shared_cards else 1.0,
        prompts="templates",
        templates=rng.randint(3, 8),
        template_flips=4,
        user_agents="sdk",
        model_switch=True,
    )


def random_adversary(rng: random.Random, window_s: float, k: float) -> Tactics:
    """Every choice drawn over the adversary's whole range (tactics.RANGES)."""
    t = draw_tactics(rng, window_s)
    return replace(t, accounts=_n(t.accounts, k))


@dataclass(frozen=True)
class Variant:
    """A named campaign: its tactics, the signal it takes away from the coordinated campaign, and the
    window it is meant to be watched over (duration, background scale, onset within the first
    `latest` of the window).

    Variants of one family draw from the same random streams: for one seed they share
    the honest population, the onset and every choice but the one they change, so a
    row of the robustness matrix differs from its base by that choice alone.
    """

    tactics: Callable[[random.Random, float, float], Tactics]
    removes: str
    description: str
    family: str
    duration_s: float = HOUR
    scale: float = 1.0
    latest: float = 1.0 / 3.0


VARIANTS: dict[str, Variant] = {
    "campaign": Variant(coordinated, "nothing", "a coordinated campaign with every signal", "campaign"),
    "campaign_aged": Variant(
        aged, "account age", "the campaign on farmed and bought accounts, weeks to years old", "campaign"
    ),
    "campaign_low_ratio": Variant(
        low_ratio, "output/input ratio", "the campaign with long contexts, output/input 0.5-1.5", "campaign"
    ),
    "campaign_own_cards": Variant(
        own_cards, "shared cards", "the campaign with a card per account", "campaign"
    ),
    "campaign_own_exits": Variant(
        own_exits, "exit rotation", "the campaign with one sticky exit per account", "campaign"
    ),
    "campaign_no_fp": Variant(
        no_fingerprints,
        "fingerprints",
        "the campaign through a gateway sending no prompt_fp/payment_fp",
        "campaign",
    ),
    "campaign_dataset": Variant(
        dataset_prompts, "shared prompts", "the campaign asking a dataset's distinct questions", "campaign"
    ),
    "campaign_slow": Variant(
        slow, "pace", "the campaign at a request every 5-30 min per account", "campaign"
    ),
    "stolen_modest": Variant(
        stolen_modest,
        "burst size",
        "stolen keys of quiet old accounts at 3-6 rps from a new network",
        "stolen",
    ),
    "glacial_shared_cards": Variant(
        lambda r, w, k: glacial(r, w, k, shared_cards=True),
        "pace (glacial)",
        "6 h: thousands of fresh accounts at ~1 request/h, rotating exits, a model switch, a few hundred cards",
        "glacial",
        duration_s=6 * HOUR,
        scale=0.25,
        latest=0.05,
    ),
    "glacial_own_cards": Variant(
        lambda r, w, k: glacial(r, w, k, shared_cards=False),
        "pace (glacial), shared cards",
        "6 h: the glacial campaign with a card per account",
        "glacial",
        duration_s=6 * HOUR,
        scale=0.25,
        latest=0.05,
    ),
    "adversary": Variant(
        random_adversary,
        "any (drawn)",
        "a campaign whose every choice is drawn at random per seed",
        "adversary",
    ),
}
