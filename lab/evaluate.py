"""Detection quality table: replay + the shared scorer on the dev hour and simulated scenarios.

For each scenario: generate labelled traffic (cached under ``out/eval``), replay it
through the detector, score the decisions with ``../shared/eval/score.py`` and do
the same for the static-limit baseline. Prints a Markdown table and writes the
full scores to ``out/eval/results.json``. With ``--arrival out-of-step`` the
detector reads each file in the order a worker reads round-robin partitions
(``traffic.arrival``), while the scorer still reads it in time order.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DEFAULT_SCENARIOS = ("mixed", "hydra", "hydra_churn", "slow_drip", "compromised", "burst", "ipv6", "no_fp",
                     "surge", "benign")


def _generate(name: str, seed: int, duration: float, scale: float, out: Path) -> tuple[Path, Path]:
    import traffic
    from traffic.files import write_events, write_labels

    ev = out / f"{name}-s{seed}.jsonl.gz"
    lab = out / f"{name}-s{seed}.labels.json.gz"
    if not (ev.exists() and lab.exists()):
        sim = traffic.generate(name, seed=seed, duration_s=duration, scale=scale)
        write_labels(sim.labels(), str(lab))
        write_events(sim.events(), str(ev) + ".tmp.gz")
        Path(str(ev) + ".tmp.gz").rename(ev)
    return ev, lab


def score_file(score_py: Path, events: str | Path, labels: str | Path, decisions: Path) -> dict:
    """The shared scorer's full report for one decisions file."""
    out = subprocess.run([sys.executable, str(score_py), str(events), str(labels), str(decisions)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _baseline(eval_dir: Path, events: Path, out: Path) -> Path:
    dec = out / (events.name.replace(".jsonl.gz", "") + ".baseline.jsonl")
    if not dec.exists():
        with open(dec, "wb") as f:
            subprocess.run([sys.executable, str(eval_dir / "baseline_static.py"), str(events)], check=True, stdout=f)
    return dec


def _as_read(events: Path, out: Path) -> Path:
    """The events file in the order a worker reads it (``traffic.arrival.out_of_step``), written once."""
    import gzip

    from traffic.arrival import out_of_step

    path = out / (events.name.replace(".jsonl.gz", "") + ".out-of-step.jsonl.gz")
    if not path.exists():
        with gzip.open(events, "rb") as f:
            lines = [line if line.endswith(b"\n") else line + b"\n" for line in f if line.strip()]
        tmp = Path(str(path) + ".tmp.gz")
        with gzip.open(tmp, "wb", compresslevel=3) as f:
            f.writelines(out_of_step(lines))
        tmp.rename(path)
    return path


def run_one(name: str, events: Path, labels: Path, eval_dir: Path, out: Path, config: str | None,
            arrival: str = "in-order") -> dict:
    """Replay ``events`` (read in their file's order, or ``out-of-step`` as a worker reads round-robin
    partitions) and score the decisions; the scorer always reads the events in order."""
    from backtest.replay import ReplayStats, replay_to_file
    from detectors.config import load_config

    read = events if arrival == "in-order" else _as_read(events, out)
    suffix = "" if arrival == "in-order" else f".{arrival}"
    dec = out / (events.name.replace(".jsonl.gz", "") + f"{suffix}.decisions.jsonl")
    stats = ReplayStats()
    t = time.perf_counter()
    with open(dec, "wb") as f:
        replay_to_file(read, load_config(config), f, stats)
    elapsed = time.perf_counter() - t
    ours = score_file(eval_dir / "score.py", events, labels, dec)
    base = score_file(eval_dir / "score.py", events, labels, _baseline(eval_dir, events, out))
    return {"scenario": name, "events": stats.events, "replay_s": round(elapsed, 1), "ours": ours,
            "baseline": base}


def _job(args: tuple) -> dict:
    name, seed, duration, scale, eval_dir, out, config, arrival = args
    if name == "dev":
        events, labels = eval_dir / "dev" / "events.jsonl.gz", eval_dir / "dev" / "labels.json.gz"
    else:
        events, labels = _generate(name, seed, duration, scale, out)
    return run_one(name if name == "dev" else f"{name} (seed {seed})", events, labels, eval_dir, out, config,
                   arrival)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def table(results: list[dict]) -> str:
    rows = ["| scenario | events | attack leakage (static 60/300) | per attack group: leakage, first enforcement "
            "| benign accounts hit | benign requests blocked | static: benign hit / blocked |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        s, b = r["ours"]["summary"], r["baseline"]["summary"]
        groups = [f"{g.split(':')[1]} {_pct(v.get('leakage'))}, {v.get('time_to_first_enforcement_s')} s"
                  for g, v in r["ours"]["groups"].items() if g.startswith("attack:") and "pre_onset" not in g]
        has_attack = bool(groups)
        rows.append(
            f"| {r['scenario']} | {r['events']:,} | "
            f"{_pct(s['attack_leakage']) if has_attack else '-'} ({_pct(b['attack_leakage']) if has_attack else '-'}) | "
            f"{'; '.join(groups) or '-'} | {s['benign_accounts_hit']} ({_pct(s['benign_accounts_hit_share'])}) | "
            f"{_pct(s['benign_blocked_event_share'])} | {b['benign_accounts_hit']} / "
            f"{_pct(b['benign_blocked_event_share'])} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--eval-dir", default="../shared/eval", help="folder with score.py, baseline_static.py, dev/")
    p.add_argument("--out", default="out/eval")
    p.add_argument("--scenarios", nargs="*", default=list(DEFAULT_SCENARIOS))
    p.add_argument("--seeds", nargs="*", type=int, default=[11])
    p.add_argument("--duration", type=float, default=3600.0)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--config", help="thresholds YAML")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--arrival", choices=("in-order", "out-of-step"), default="in-order",
                   help="replay events in time order, or as a worker reads four round-robin partitions")
    a = p.parse_args(argv)
    eval_dir, out = Path(a.eval_dir), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    if (eval_dir / "dev" / "events.jsonl.gz").exists():
        jobs.append(("dev", 0, a.duration, a.scale, eval_dir, out, a.config, a.arrival))
    jobs += [(n, seed, a.duration, a.scale, eval_dir, out, a.config, a.arrival) for n in a.scenarios
             for seed in a.seeds]
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        results = list(pool.map(_job, jobs))
    (out / ("results.json" if a.arrival == "in-order" else f"results.{a.arrival}.json")).write_text(
        json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
