"""Honest prompts follow a popularity curve: some shared by many people, most private."""

import random
from collections import defaultdict

from traffic.benign import people
from traffic.rhythm import Rhythm
from traffic.scenarios import DEFAULT_T0
from traffic.simulation import Simulation
from traffic.world import World


def test_honest_prompts_follow_a_popularity_curve():
    world = World(seed=1, t0=DEFAULT_T0, duration=3600.0, rhythm=Rhythm(peak_hour=(DEFAULT_T0 % 86400) / 3600))
    sim = Simulation("t", "t1", world.t0, world.duration, people(world, 1500))
    senders = defaultdict(set)
    for e in sim.events():
        senders[e["prompt_fp"]].add(e["account_id"])
    shared = sorted((len(a) for a in senders.values()), reverse=True)
    assert shared[0] >= 5  # the docs' quick-start, sent word for word by many
    assert sum(1 for n in shared if n == 1) > 0.5 * len(shared)  # and yet most prompts are one person's


def test_a_persons_habit_mixes_shared_own_and_private_prompts():
    world = World(seed=2, t0=DEFAULT_T0, duration=60.0)
    habit = world.catalog.habit(random.Random(3), shared=(0.4, 0.4))
    rng = random.Random(4)
    fps = [habit(rng) for _ in range(2000)]
    popular = {world.catalog.entry(r) for r in range(50)}
    assert 0.02 < sum(fp in popular for fp in fps) / len(fps) < 0.4
    assert len(set(fps)) > 0.4 * len(fps)
