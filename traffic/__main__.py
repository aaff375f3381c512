"""Command line: write a named scenario to OUTDIR/events.jsonl.gz and OUTDIR/labels.json.gz.

usage: python -m traffic NAME OUTDIR [--seed N] [--t0 TS] [--duration S] [--scale X] [--attack-scale X]
       python -m traffic --list      the scenarios
       python -m traffic --matrix    the robustness matrix's rows and seeds
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

from .adversary import Campaign
from .files import write_events, write_labels
from .matrix import HELD_OUT_SEEDS, MATRIX, TUNING_SEEDS
from .scenarios import DEFAULT_T0, SCENARIOS, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m traffic", description="Write a labelled traffic scenario.")
    p.add_argument("name", nargs="?", choices=sorted(SCENARIOS))
    p.add_argument("outdir", nargs="?")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--t0", type=float, default=DEFAULT_T0)
    p.add_argument("--duration", type=float, help="seconds (default: the scenario's own, mostly 3600)")
    p.add_argument("--scale", type=float, help="size of the benign population (default: the scenario's own)")
    p.add_argument("--attack-scale", type=float, default=1.0, help="size of the attacks")
    p.add_argument("--plain", action="store_true", help="write uncompressed .jsonl / .json")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    p.add_argument("--matrix", action="store_true", help="list the robustness matrix's rows and exit")
    a = p.parse_args(argv)
    if a.matrix:
        print(f"tuning seeds {list(TUNING_SEEDS)}; held-out seeds {list(HELD_OUT_SEEDS)} (never tune on them)")
        for r in MATRIX:
            print(f"{r.kind:6} {r.name:22} {r.scenario:26} {r.description}; {r.signal or 'baseline'}")
        return 0
    if a.list or not a.name:
        for name, desc in SCENARIOS.items():
            print(f"{name:26} {desc}")
        return 0
    if not a.outdir:
        p.error("OUTDIR is required")
    os.makedirs(a.outdir, exist_ok=True)
    ext = "" if a.plain else ".gz"
    started = time.perf_counter()
    sim = generate(
        a.name, seed=a.seed, t0=a.t0, duration_s=a.duration, scale=a.scale, attack_scale=a.attack_scale
    )
    labels = sim.labels()
    groups: Counter[str] = Counter()
    accounts = labels["accounts"]

    def counted():
        for ev in sim.events():
            lab = accounts[ev["account_id"]]
            groups[f"{lab['label']}:{lab['group'] or 'plain'}"] += 1
            yield ev

    n = write_events(counted(), os.path.join(a.outdir, f"events.jsonl{ext}"))
    write_labels(labels, os.path.join(a.outdir, f"labels.json{ext}"))
    hours = sim.duration / 3600.0
    print(
        f"{a.name} seed={a.seed}: {n} events ({n / hours:.0f} an hour over {hours:g} h), {len(accounts)} accounts"
        f" in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    for g, c in sorted(groups.items()):
        print(f"  {g:28} {c:>9}", file=sys.stderr)
    for actor in sim.actors:
        if isinstance(actor, Campaign):
            print(f"  {actor.group} tactics: {actor.tactics.describe()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
