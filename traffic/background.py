"""The honest population every scenario runs on: the long-standing groups and the look-alikes of
every per-account attack signal.

The long-standing groups are people at home, app back-ends, heavy enterprise
customers, cron jobs, a corporate NAT, a hackathon and the proxy service's honest
customers (benign.py). The look-alikes (lookalikes.py, tenants.py) each show one
thing a campaign shows, for an honest reason; a detector that keys on that one
thing hits them. They join every scenario at a moderate size, and an honest row of
the robustness matrix enlarges one of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .benign import Batch, Heavy, Integration, corp_nat, hackathon, people, proxy_customers
from .lookalikes import agent_tool, long_answers, org_seats, rotating_newcomers, signup_wave
from .providers import Providers
from .simulation import Actor
from .tenants import ci_runners, paas_egress, serverless_fleet
from .world import World


def sized(base: float, scale: float, floor: int) -> int:
    """base scaled, never below floor.

    >>> sized(120, 0.01, 3), sized(120, 0.5, 3)
    (3, 60)
    """
    return max(floor, round(base * scale))


def population(world: World, scale: float, providers: Providers, *, v6_share: float = 0.0) -> list[Actor]:
    """The long-standing honest groups: people, back-ends, heavy customers, cron jobs, a NAT, a
    hackathon, proxy customers."""
    rng = world.rng("background", "plan")
    actors: list[Actor] = []
    actors += people(world, sized(3000, scale, 20), v6_share=v6_share)
    actors += [Integration(world, f"integration/{i}") for i in range(sized(120, scale, 3))]
    actors += [Heavy(world, f"heavy/{i}") for i in range(sized(rng.randint(1, 3), scale, 1))]
    actors += [Batch(world, f"batch/{i}") for i in range(sized(rng.randint(4, 8), scale, 1))]
    actors += corp_nat(world, sized(rng.randint(100, 400), scale, 8))
    actors += hackathon(world, max(8, round(rng.randint(20, 80) * min(1.0, 3 * scale))))
    actors += proxy_customers(world, sized(rng.randint(50, 150), scale, 5), providers.proxy)
    return actors


@dataclass(frozen=True)
class Lookalike:
    """One honest look-alike group: how to build it, its size in the background at scale 1 (people,
    customers or organisations) and the smallest size it keeps at any scale, and what it looks like."""

    build: Callable[[World, Providers, int], list[Actor]]
    size: int
    floor: int
    resembles: str


LOOKALIKES: dict[str, Lookalike] = {
    "rotating_newcomer": Lookalike(
        rotating_newcomers,
        60,
        5,
        "young accounts on rotating VPN or mobile exits, some harvesting long answers",
    ),
    "long_answers": Lookalike(long_answers, 80, 5, "output several times the input"),
    "signup_wave": Lookalike(
        signup_wave, 60, 8, "a cohort of fresh accounts with one client, shared prompts and long answers"
    ),
    "org_seats": Lookalike(org_seats, 3, 2, "many accounts, some created today, billed to one card"),
    "agent_tool": Lookalike(agent_tool, 40, 5, "one user agent, template prompts, several requests a second"),
    "ci_runners": Lookalike(ci_runners, 40, 4, "quiet old accounts waking together on one cloud /24"),
    "paas_egress": Lookalike(paas_egress, 20, 3, "many accounts, some new, on a few shared cloud addresses"),
    "serverless_fleet": Lookalike(serverless_fleet, 2, 1, "one account on hundreds of cloud addresses"),
}


def lookalikes(
    world: World, scale: float, providers: Providers, *, enlarge: str | None = None, factor: float = 5.0
) -> list[Actor]:
    """Every look-alike group at its background size times scale; enlarge makes one of them factor
    times larger."""
    actors: list[Actor] = []
    for name, look in LOOKALIKES.items():
        n = sized(look.size, scale, look.floor)
        actors += look.build(world, providers, round(n * factor) if name == enlarge else n)
    return actors


def onset(rng: random.Random, world: World, *, latest: float = 1.0 / 3.0) -> float:
    """When an attack begins: after some warm-up, within the first `latest` of the window."""
    d = world.duration
    return world.t0 + rng.uniform(min(120.0, 0.1 * d), d * latest)
