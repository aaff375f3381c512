"""Named scenarios: which honest population and which attacks share an hour (or six).

Every scenario draws its sizes, rates and onsets from its seed, so two seeds of
one scenario are two different incidents of the same kind. Attacks start at a
random moment in the first third of the window, after some warm-up. Every
scenario's honest population holds the long-standing groups and every look-alike
of an attack signal (background.py); the `honest_*` scenarios enlarge one
look-alike, the `campaign*`, `stolen_modest`, `glacial_*` and `adversary` ones run
one campaign of variants.py.

>>> sim = generate("burst", seed=3, duration_s=600.0, scale=0.02, attack_scale=0.2)
>>> groups = {v["group"] for v in sim.labels()["accounts"].values() if v["label"] == "attack"}
>>> groups
{'burst'}
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .addresses import ExitPool
from .adversary import Campaign
from .attacks import Burst, Compromised, Hydra, SlowDrip
from .background import LOOKALIKES, lookalikes, onset, population, sized
from .clients import Release
from .draws import log_uniform
from .providers import Providers
from .rhythm import Rhythm
from .simulation import Actor, Simulation
from .variants import VARIANTS
from .world import World

DEFAULT_T0 = 1790000000.0
NEW_MODEL = "large-2"

Build = Callable[[World, float, float], list[Actor]]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: one line of description, how to build its actors (world, scale,
    attack_scale), the duration and honest-population scale it is meant to run at, and the
    family whose random streams it shares (its own name if None): scenarios of one family
    have, seed for seed, the same day's rhythm and honest population."""

    description: str
    build: Build
    duration_s: float = 3600.0
    scale: float = 1.0
    family: str | None = None


def _hydra(world: World, pool: ExitPool, k: float, *, churn: bool = False, tag: str = "hydra") -> Hydra:
    rng = world.rng(tag, "size")
    if churn:
        return Hydra(
            world,
            tag,
            pool,
            onset=onset(rng, world),
            concurrency=sized(log_uniform(rng, 300, 1500), k, 10),
            life_min=(1.0, 6.0),
            created_before_min=(2.0, 60.0),
        )
    return Hydra(
        world, tag, pool, onset=onset(rng, world), concurrency=sized(log_uniform(rng, 100, 800), k, 10)
    )


def _drip(world: World, k: float, *, v6: bool = False, size: tuple[float, float] = (300, 1500)) -> SlowDrip:
    rng = world.rng("slow_drip", "size")
    return SlowDrip(
        world, "slow_drip", onset=onset(rng, world), accounts=sized(log_uniform(rng, *size), k, 20), v6=v6
    )


def _compromised(
    world: World,
    k: float,
    *,
    size: tuple[float, float] = (20, 200),
    run_min: tuple[float, float] | None = None,
) -> Compromised:
    rng = world.rng("compromised", "size")
    return Compromised(
        world,
        "compromised",
        onset=onset(rng, world),
        accounts=sized(log_uniform(rng, *size), k, 10),
        run_min=run_min,
    )


def _burst(world: World, k: float, *, size: tuple[int, int] = (1, 4)) -> Burst:
    rng = world.rng("burst", "size")
    return Burst(world, "burst", onset=onset(rng, world), accounts=sized(rng.randint(*size), k, 1))


def _legacy(kind: str, world: World, scale: float, k: float) -> list[Actor]:
    """The first scenarios: the hydra, slow drip, compromised keys and bursts, alone or together."""
    v6 = kind == "ipv6"
    providers = Providers(world, v6_proxy=v6)
    pool = providers.proxy
    actors = population(world, scale, providers, v6_share=0.3 if v6 else 0.0)
    if kind in ("mixed", "no_fp"):
        actors += [
            _hydra(world, pool, k),
            _burst(world, k),
            _drip(world, k, size=(200, 800)),
            _compromised(world, k, size=(20, 60), run_min=(15.0, 40.0)),
        ]
        world.fingerprints = kind != "no_fp"
    elif kind in ("hydra", "surge", "ipv6"):
        actors.append(_hydra(world, pool, k))
        if v6:
            actors.append(_drip(world, k, v6=True))
    elif kind == "hydra_churn":
        actors.append(_hydra(world, pool, k, churn=True))
    elif kind == "slow_drip":
        actors.append(_drip(world, k))
    elif kind == "compromised":
        actors.append(_compromised(world, k))
    elif kind == "burst":
        actors.append(_burst(world, k, size=(2, 6)))
    # built after the attacks, so the attacks draw the same addresses and ids as before they existed
    return actors + lookalikes(world, scale, providers)


def _campaign(name: str, world: World, scale: float, k: float) -> list[Actor]:
    """The honest population and one campaign of variants.py, labelled with the variant's name."""
    variant = VARIANTS[name]
    providers = Providers(world)
    actors = population(world, scale, providers)
    rng = world.rng(variant.family, "size")
    tactics = variant.tactics(rng, world.duration, k)
    if tactics.model_switch:
        world.release = Release(NEW_MODEL, world.t0 + rng.uniform(0.25, 0.5) * world.duration)
    world.fingerprints = tactics.fingerprints
    start = onset(rng, world, latest=variant.latest)
    actors.append(Campaign(world, variant.family, tactics, providers, onset=start, group=name))
    return actors + lookalikes(world, scale, providers)


def _honest(look: str | None, world: World, scale: float, k: float) -> list[Actor]:
    """The honest population with one look-alike enlarged five times (or none), no attack."""
    providers = Providers(world)
    return population(world, scale, providers) + lookalikes(world, scale, providers, enlarge=look)


_LEGACY = {
    "mixed": "all benign groups plus hydra, burst, compromised keys and a slow drip",
    "hydra": "all benign groups plus a distillation campaign of fresh accounts over a proxy's exits",
    "hydra_churn": "all benign groups plus a hydra whose accounts live only minutes (fast replacement)",
    "slow_drip": "all benign groups plus hundreds of fresh accounts, each slow and on its own residential exit",
    "compromised": "all benign groups plus old accounts driven from one datacenter /24 at ~1 rps each",
    "burst": "all benign groups plus old accounts jumping to 10-25 rps for minutes",
    "ipv6": "all benign groups (some people on IPv6) plus hydra and drip over IPv6 exits",
    "no_fp": "the mixed scenario as seen by a gateway that sends no prompt_fp and no payment_fp",
    "surge": "all benign groups with a 20-minute launch-day surge (x3) plus a hydra",
}

SCENARIO_SPECS: dict[str, Scenario] = {
    **{name: Scenario(desc, partial(_legacy, name)) for name, desc in _LEGACY.items()},
    **{
        name: Scenario(
            f"benign groups plus {v.description}", partial(_campaign, name), v.duration_s, v.scale, v.family
        )
        for name, v in VARIANTS.items()
    },
    **{
        f"honest_{name}": Scenario(
            f"benign groups with {name} x5 ({look.resembles}), no attack", partial(_honest, name), family="benign"
        )
        for name, look in LOOKALIKES.items()
    },
    "benign": Scenario("all benign groups, no attack", partial(_honest, None)),
}
SCENARIOS: dict[str, str] = {name: spec.description for name, spec in SCENARIO_SPECS.items()}


def _rhythm(name: str, rng: random.Random, t0: float, duration: float, peak_hour: float | None) -> Rhythm:
    surge = None
    if name == "surge":
        length = min(1200.0, duration / 3.0)
        start = t0 + rng.uniform(0.2, 0.6) * duration
        surge = (start, start + length, 3.0)
    peak = rng.uniform(0.0, 24.0)
    return Rhythm(
        peak_hour=peak if peak_hour is None else peak_hour, amplitude=rng.uniform(0.3, 0.6), surge=surge
    )


def generate(
    name: str,
    *,
    seed: int = 1,
    t0: float = DEFAULT_T0,
    duration_s: float | None = None,
    scale: float | None = None,
    attack_scale: float = 1.0,
    peak_hour: float | None = None,
) -> Simulation:
    """Build the named scenario; scale sizes the honest population, attack_scale the attacks.

    duration_s and scale default to the scenario's own (an hour at scale 1, six hours
    at scale 0.25 for the glacial ones). peak_hour (UTC) is when honest traffic peaks;
    random per seed unless given.

    At scale 1 an hour of "mixed" holds a few hundred thousand events; scale 0.05
    with attack_scale 0.1 gives a few thousand, for unit tests.
    """
    spec = SCENARIO_SPECS.get(name)
    if spec is None:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    duration_s = spec.duration_s if duration_s is None else duration_s
    scale = spec.scale if scale is None else scale
    if duration_s <= 0 or scale <= 0 or attack_scale <= 0:
        raise ValueError(
            f"duration_s, scale and attack_scale must be > 0, got {duration_s}, {scale}, {attack_scale}"
        )
    rng = random.Random(f"{seed}/{spec.family or name}/rhythm")
    world = World(seed=seed, t0=t0, duration=duration_s, rhythm=_rhythm(name, rng, t0, duration_s, peak_hour))
    actors = spec.build(world, scale, attack_scale)
    return Simulation(name, f"{name}{seed}", t0, duration_s, actors, strip_fingerprints=not world.fingerprints)
