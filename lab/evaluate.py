"""Detection quality (``make eval``): replay and the project's scorer over rows of scenarios and several seeds.

A row names a scenario of the simulator and what it holds (``kind``: ``attack`` or
``honest``); every row runs once per seed, and the dev hour (``../shared/eval/dev``)
once more when it is beside the repository. Each run generates the labelled traffic
(cached under ``out/eval/sim-<simulator version>``), replays it through the detector,
scores the decisions with ``backtest.score`` and does the same for the static-limit
baseline (``backtest.baseline``). Prints the seeds and what was left out, then the
robustness matrix (``lab.robustness``); writes the full reports to
``out/eval/results.json`` and the matrix to ``out/eval/matrix.json``. With
``--arrival out-of-step`` the detector reads each file in the order a worker reads
round-robin partitions (``traffic.arrival``), while the scorer reads it in time order.

Rows come from ``--scenarios`` (one row each, named after it) or from ``--rows
module:NAME``, any sequence of objects with ``.name``, ``.scenario`` and ``.kind``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lab.robustness import markdown, matrix
from traffic.matrix import HELD_OUT_SEEDS

ROOT = Path(__file__).resolve().parents[1]
DEV_DIR = ROOT.parent / "shared" / "eval" / "dev"  # the reference's dev hour, when it is beside the repository
DEFAULT_ROWS_SPEC = "traffic.matrix:EVAL_ROWS"  # the robustness matrix and the in-distribution rows
KINDS = ("attack", "honest")


class RowLike(Protocol):
    """What the runner reads of a row (``traffic.matrix`` rows have a description too)."""

    @property
    def name(self) -> str: ...
    @property
    def scenario(self) -> str: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class Row:
    """One row of the matrix: its name, the simulator's scenario behind it, and whether it holds an attack."""

    name: str
    scenario: str
    kind: str = "attack"
    description: str = ""


def scenario_rows(names: tuple[str, ...] | list[str]) -> tuple[Row, ...]:
    """One row per scenario, named after it; ``benign`` is the honest one.

    >>> scenario_rows(["burst", "benign"])[1]
    Row(name='benign', scenario='benign', kind='honest', description='')
    """
    return tuple(Row(n, n, "honest" if n == "benign" else "attack") for n in names)


def load_rows(spec: str) -> tuple[RowLike, ...]:
    """Rows named ``module:NAME`` (e.g. ``traffic.matrix:MATRIX``), checked for what the runner needs."""
    module, _, attr = spec.partition(":")
    try:
        rows = tuple(getattr(importlib.import_module(module), attr or "MATRIX"))
    except (ImportError, AttributeError, TypeError) as exc:
        raise ValueError(f"--rows {spec}: {exc}") from None
    for r in rows:
        if not all(isinstance(getattr(r, f, None), str) for f in ("name", "scenario", "kind")) or r.kind not in KINDS:
            raise ValueError(f"--rows {spec}: {r!r} is not a row (name, scenario, kind in {KINDS})")
    return rows


def simulator_version() -> str:
    """A digest of the simulator's source: generated traffic is cached per version, so a changed
    simulator never scores stale files."""
    import traffic

    h = hashlib.blake2b(digest_size=5)
    src = Path(traffic.__file__).parent
    for p in sorted(src.rglob("*.py")):
        h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _generate(name: str, seed: int, duration: float | None, scale: float | None, out: Path) -> tuple[Path, Path]:
    """The scenario's events and labels in ``out``, generated once (at the scenario's own duration and scale
    unless told)."""
    import traffic
    from traffic.files import write_events, write_labels

    stem = f"{name}-s{seed}" + ("" if (duration, scale) == (None, None) else f"-d{duration}-x{scale}")
    ev, lab = out / f"{stem}.jsonl.gz", out / f"{stem}.labels.json.gz"
    if not (ev.exists() and lab.exists()):
        sim = traffic.generate(name, seed=seed, duration_s=duration, scale=scale)
        write_labels(sim.labels(), str(lab))
        write_events(sim.events(), str(ev) + ".tmp.gz")
        Path(str(ev) + ".tmp.gz").rename(ev)
    return ev, lab


def _stem(events: Path) -> str:
    return events.name.removesuffix(".gz").removesuffix(".jsonl")


def _as_read(events: Path, out: Path) -> Path:
    """The events file in the order a worker reads it (``traffic.arrival.out_of_step``), written once."""
    from traffic.arrival import out_of_step

    path = out / f"{_stem(events)}.out-of-step.jsonl.gz"
    if not path.exists():
        with gzip.open(events, "rb") as f:
            lines = [line if line.endswith(b"\n") else line + b"\n" for line in f if line.strip()]
        tmp = Path(str(path) + ".tmp.gz")
        with gzip.open(tmp, "wb", compresslevel=3) as f:
            f.writelines(out_of_step(lines))
        tmp.rename(path)
    return path


def run_one(events: Path, labels: Path, out: Path, config: str | None, arrival: str = "in-order") -> dict[str, Any]:
    """Replay ``events`` (in their file's order, or ``out-of-step`` as a worker reads round-robin partitions)
    and score the decisions and the static baseline's; the scorer always reads the events in order."""
    from backtest.baseline import write_baseline
    from backtest.replay import ReplayStats, replay_to_file
    from backtest.score import score
    from detectors.config import load_config

    read = events if arrival == "in-order" else _as_read(events, out)
    suffix = "" if arrival == "in-order" else f".{arrival}"
    dec = out / f"{_stem(events)}{suffix}.decisions.jsonl"
    stats = ReplayStats()
    t = time.perf_counter()
    with open(dec, "wb") as f:
        decisions = replay_to_file(read, load_config(config), f, stats)
    elapsed = time.perf_counter() - t
    base = out / f"{_stem(events)}.baseline.jsonl"
    write_baseline(events, base)
    return {"events": stats.events, "replay_s": round(elapsed, 1),
            "ours": score(events, labels, decisions, explain=True), "baseline": score(events, labels, base)}


@dataclass(frozen=True)
class _Run:
    row: str
    scenario: str | None  # None: the dev hour
    kind: str
    seed: int | None


def _job(args: tuple[_Run, Path | None, float | None, float | None, Path, str | None, str]) -> dict[str, Any]:
    run, dev, duration, scale, out, config, arrival = args
    where = out / ("dev" if run.scenario is None else f"sim-{simulator_version()}")
    where.mkdir(parents=True, exist_ok=True)
    if run.scenario is None:
        assert dev is not None, "the dev hour's run is made only when there is one"
        events, labels = dev / "events.jsonl.gz", dev / "labels.json.gz"
    else:
        events, labels = _generate(run.scenario, run.seed or 0, duration, scale, where)
    return {"row": run.row, "kind": run.kind, "scenario": run.scenario or "dev", "seed": run.seed,
            **run_one(events, labels, where, config, arrival)}


def evaluate(rows: tuple[RowLike, ...], seeds: tuple[int, ...], dev: Path | None, out: Path, *,
             duration: float | None = None, scale: float | None = None, config: str | None = None,
             arrival: str = "in-order",
             jobs: int = 2) -> list[dict[str, Any]]:
    """Every row over every seed (and the dev hour, if ``dev`` is given): one result per run, in order."""
    runs = [_Run("dev hour", None, "attack", None)] if dev is not None else []
    runs += [_Run(r.name, r.scenario, r.kind, seed) for r in rows for seed in seeds]
    args = [(run, dev, duration, scale, out, config, arrival) for run in runs]
    if jobs <= 1:
        return [_job(a) for a in args]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_job, args))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lab.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/eval")
    p.add_argument("--scenarios", nargs="*", help="one row per scenario (instead of --rows)")
    p.add_argument("--rows", default=DEFAULT_ROWS_SPEC,
                   help="rows as module:NAME (default: %(default)s: the robustness matrix, then the previous "
                        "simulator's scenarios)")
    p.add_argument("--seeds", nargs="+", type=int,
                   help="seeds (default: the matrix's held-out seeds, never tuned on: "
                        f"{' '.join(map(str, HELD_OUT_SEEDS))})")
    p.add_argument("--dev", default=str(DEV_DIR), help="folder with the dev hour (events.jsonl.gz, labels.json.gz); "
                                                       "left out when it is not there (default: %(default)s)")
    p.add_argument("--duration", type=float, help="seconds of traffic (default: each scenario's own)")
    p.add_argument("--scale", type=float, help="size of the honest population (default: each scenario's own)")
    p.add_argument("--config", help="thresholds YAML")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--arrival", choices=("in-order", "out-of-step"), default="in-order",
                   help="replay events in time order, or as a worker reads four round-robin partitions")
    a = p.parse_args(argv)
    if a.rows != DEFAULT_ROWS_SPEC and a.scenarios:
        p.error("--rows and --scenarios are two ways to say the same thing: give one")
    a.seeds = a.seeds or list(HELD_OUT_SEEDS)
    try:
        rows = scenario_rows(a.scenarios) if a.scenarios else load_rows(a.rows)
    except ValueError as exc:
        p.error(str(exc))
    import traffic

    unknown = sorted({r.scenario for r in rows} - set(traffic.SCENARIOS))
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)}; the simulator has {', '.join(traffic.SCENARIOS)}")
    dev = Path(a.dev)
    has_dev = (dev / "events.jsonl.gz").exists() and (dev / "labels.json.gz").exists()
    print(f"seeds: {' '.join(map(str, a.seeds))}; rows: {', '.join(r.name for r in rows)}; arrival: {a.arrival}")
    print(f"dev hour: {'included from ' if has_dev else 'left out, not found: '}{dev}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    results = evaluate(rows, tuple(a.seeds), dev if has_dev else None, out, duration=a.duration, scale=a.scale,
                       config=a.config, arrival=a.arrival, jobs=a.jobs)
    suffix = "" if a.arrival == "in-order" else f".{a.arrival}"
    table = matrix(results)
    (out / f"results{suffix}.json").write_text(json.dumps(results, indent=1))
    (out / f"matrix{suffix}.json").write_text(json.dumps(
        {"seeds": a.seeds, "dev_hour": str(dev) if has_dev else None, "arrival": a.arrival, "rows": table},
        indent=1))
    print(markdown(table))
    (out / f"summary{suffix}.md").write_text(markdown(table, per_run=False) + "\n")
    print(f"{len(results)} runs in {time.perf_counter() - t:.0f} s; reports in {out}/results{suffix}.json, "
          f"the matrix in {out}/matrix{suffix}.json, a line per row over the seeds in {out}/summary{suffix}.md",
          file=sys.stderr)


if __name__ == "__main__":
    main()
