"""Helpers for the simulator's tests: run a few actors in a world of their own, and measure events."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable

from traffic.clients import Release
from traffic.providers import Providers
from traffic.rhythm import Rhythm
from traffic.scenarios import DEFAULT_T0
from traffic.simulation import Actor, Simulation
from traffic.world import World

PEAK = (DEFAULT_T0 % 86400) / 3600  # daytime, so office and people groups are busy in a short window

Build = Callable[[World, Providers], list[Actor]]


def run_actors(
    build: Build, *, seed: int = 1, duration: float = 3600.0, release_at: float | None = None
) -> tuple[list[dict], dict]:
    """Events and label entries of the actors build makes in a fresh world (daytime, no surge)."""
    world = World(seed=seed, t0=DEFAULT_T0, duration=duration, rhythm=Rhythm(peak_hour=PEAK))
    if release_at is not None:
        world.release = Release("large-2", DEFAULT_T0 + release_at)
    sim = Simulation("test", f"test{seed}", world.t0, duration, build(world, Providers(world)))
    return list(sim.events()), sim.labels()["accounts"]


def per_account(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for ev in events:
        out[ev["account_id"]].append(ev)
    return out


def net24(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an address is in."""
    v = ipaddress.ip_address(ip).version
    return str(ipaddress.ip_network(f"{ip}/{24 if v == 4 else 48}", strict=False))


def max_in_window(ts: list[float], width: float) -> int:
    """The most timestamps in any window of width seconds (ts sorted)."""
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best
