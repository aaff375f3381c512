"""Named scenarios: which benign population and which attacks share an hour (or a day).

Every scenario draws its sizes, rates and onsets from its seed, so two seeds of
one scenario are two different incidents of the same kind. Attacks start at a
random moment in the first third of the window, after some warm-up.

>>> sim = generate("burst", seed=3, duration_s=600.0, scale=0.02, attack_scale=0.2)
>>> groups = {v["group"] for v in sim.labels()["accounts"].values() if v["label"] == "attack"}
>>> groups
{'burst'}
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from .addresses import ExitPool
from .attacks import Burst, Compromised, Hydra, SlowDrip
from .benign import Batch, Heavy, Integration, corp_nat, hackathon, people, proxy_customers
from .draws import log_uniform
from .rhythm import Rhythm
from .simulation import Actor, Simulation
from .world import World

DEFAULT_T0 = 1790000000.0

SCENARIOS: dict[str, str] = {
    "mixed": "all benign groups plus hydra, burst, compromised keys and a slow drip",
    "hydra": "all benign groups plus a distillation campaign of fresh accounts over a proxy's exits",
    "hydra_churn": "all benign groups plus a hydra whose accounts live only minutes (fast replacement)",
    "slow_drip": "all benign groups plus hundreds of fresh accounts, each slow and on its own residential exit",
    "compromised": "all benign groups plus old accounts driven from one datacenter /24 at ~1 rps each",
    "burst": "all benign groups plus old accounts jumping to 10-25 rps for minutes",
    "ipv6": "all benign groups (some people on IPv6) plus hydra and drip over IPv6 exits",
    "no_fp": "the mixed scenario as seen by a gateway that sends no prompt_fp and no payment_fp",
    "surge": "all benign groups with a 20-minute launch-day surge (x3) plus a hydra",
    "benign": "all benign groups, no attack",
}


def _n(base: float, scale: float, floor: int) -> int:
    return max(floor, round(base * scale))


def _onset(rng: random.Random, world: World) -> float:
    d = world.duration
    return world.t0 + rng.uniform(min(120.0, 0.1 * d), d / 3.0)


def _exit_pool(world: World, v6: bool = False) -> ExitPool:
    rng = world.rng("proxy_service", "plan")
    return ExitPool(
        world.internet,
        rng,
        residential_nets=round(log_uniform(rng, 150, 600)),
        datacenter_nets=rng.randint(10, 40),
        v6=v6,
    )


def benign_background(world: World, scale: float, pool: ExitPool, *, v6_share: float = 0.0) -> list[Actor]:
    """Every benign group: people, back-ends, heavy customers, cron jobs, a NAT, a hackathon, proxy users."""
    rng = world.rng("background", "plan")
    actors: list[Actor] = []
    actors += people(world, _n(3000, scale, 20), v6_share=v6_share)
    actors += [Integration(world, f"integration/{i}") for i in range(_n(120, scale, 3))]
    actors += [Heavy(world, f"heavy/{i}") for i in range(_n(rng.randint(1, 3), scale, 1))]
    actors += [Batch(world, f"batch/{i}") for i in range(_n(rng.randint(4, 8), scale, 1))]
    actors += corp_nat(world, _n(rng.randint(100, 400), scale, 8))
    actors += hackathon(world, max(8, round(rng.randint(20, 80) * min(1.0, 3 * scale))))
    actors += proxy_customers(world, _n(rng.randint(50, 150), scale, 5), pool)
    return actors


def _hydra(world: World, pool: ExitPool, k: float, *, churn: bool = False, tag: str = "hydra") -> Hydra:
    rng = world.rng(tag, "size")
    if churn:
        return Hydra(
            world,
            tag,
            pool,
            onset=_onset(rng, world),
            concurrency=_n(log_uniform(rng, 300, 1500), k, 10),
            life_min=(1.0, 6.0),
            created_before_min=(2.0, 60.0),
        )
    return Hydra(
        world, tag, pool, onset=_onset(rng, world), concurrency=_n(log_uniform(rng, 100, 800), k, 10)
    )


def _drip(world: World, k: float, *, v6: bool = False, size: tuple[float, float] = (300, 1500)) -> SlowDrip:
    rng = world.rng("slow_drip", "size")
    return SlowDrip(
        world, "slow_drip", onset=_onset(rng, world), accounts=_n(log_uniform(rng, *size), k, 20), v6=v6
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
        onset=_onset(rng, world),
        accounts=_n(log_uniform(rng, *size), k, 10),
        run_min=run_min,
    )


def _burst(world: World, k: float, *, size: tuple[int, int] = (1, 4)) -> Burst:
    rng = world.rng("burst", "size")
    return Burst(world, "burst", onset=_onset(rng, world), accounts=_n(rng.randint(*size), k, 1))


def _build(kind: str, world: World, scale: float, k: float) -> list[Actor]:
    v6 = kind == "ipv6"
    pool = _exit_pool(world, v6=v6)
    actors = benign_background(world, scale, pool, v6_share=0.3 if v6 else 0.0)
    if kind in ("mixed", "no_fp"):
        actors += [
            _hydra(world, pool, k),
            _burst(world, k),
            _drip(world, k, size=(200, 800)),
            _compromised(world, k, size=(20, 60), run_min=(15.0, 40.0)),
        ]
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
    return actors


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


BUILDERS: dict[str, Callable[[World, float, float], list[Actor]]] = {
    name: partial(_build, name) for name in SCENARIOS
}


def generate(
    name: str,
    *,
    seed: int = 1,
    t0: float = DEFAULT_T0,
    duration_s: float = 3600.0,
    scale: float = 1.0,
    attack_scale: float = 1.0,
    peak_hour: float | None = None,
) -> Simulation:
    """Build the named scenario; scale sizes the benign population, attack_scale the attacks.

    peak_hour (UTC) is when honest traffic peaks; random per seed unless given.

    At scale 1 an hour of "mixed" holds a few hundred thousand events; scale 0.05
    with attack_scale 0.1 gives a few thousand, for unit tests.
    """
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if duration_s <= 0 or scale <= 0 or attack_scale <= 0:
        raise ValueError(
            f"duration_s, scale and attack_scale must be > 0, got {duration_s}, {scale}, {attack_scale}"
        )
    rng = random.Random(f"{seed}/{name}/rhythm")
    world = World(seed=seed, t0=t0, duration=duration_s, rhythm=_rhythm(name, rng, t0, duration_s, peak_hour))
    actors = BUILDERS[name](world, scale, attack_scale)
    return Simulation(name, f"{name}{seed}", t0, duration_s, actors, strip_fingerprints=name == "no_fp")
