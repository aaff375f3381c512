"""``ratehound compare``: what changes between two threshold files on one traffic file.

Replays the file under both configs and reports decisions added and removed,
keys newly enforced or no longer enforced, and, given the labels, how many of
those are attack and honest accounts, with the scorer's leakage and collateral
for each config. This is the SRE's check before a new threshold enforces.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from backtest.replay import replay_to_file
from detectors.config import load_config
from detectors.policy import ENFORCING, Decision
from lab.evaluate import score_file


def _run(events: str, config: str | None, out: Path) -> list[Decision]:
    with open(out, "wb") as f:  # on two cores where there are two: the same decisions, sooner
        return replay_to_file(events, load_config(config), f, processes=2 if (os.cpu_count() or 1) >= 2 else 1)


def _enforced(decisions: list[Decision]) -> set[tuple[str, str]]:
    return {(d.scope, d.key) for d in decisions if d.action in ENFORCING}


def _labels(path: str | None) -> dict:
    if not path:
        return {}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)["accounts"]


def _score(score_py: Path, events: str, labels: str, decisions: Path) -> dict | None:
    return score_file(score_py, events, labels, decisions)["summary"] if score_py.exists() else None


def compare(events: str, config_a: str | None, config_b: str | None, labels: str | None = None,
            eval_dir: str = "../shared/eval") -> dict:
    """The report as a dict (also printed by the command)."""
    with tempfile.TemporaryDirectory(prefix="rh-compare-") as d:
        tmp = Path(d)
        a = _run(events, config_a, tmp / "a.jsonl")
        b = _run(events, config_b, tmp / "b.jsonl")
        sig = lambda ds: Counter((x.scope, x.key, x.action, x.reason) for x in ds)  # noqa: E731
        sa, sb = sig(a), sig(b)
        ea, eb = _enforced(a), _enforced(b)
        report: dict = {
            "decisions": {"a": len(a), "b": len(b), "added": sum((sb - sa).values()),
                          "removed": sum((sa - sb).values())},
            "enforced_keys": {"a": len(ea), "b": len(eb), "newly_enforced": len(eb - ea),
                              "no_longer_enforced": len(ea - eb)},
            "examples": {"newly_enforced": sorted(f"{s}:{k}" for s, k in eb - ea)[:10],
                         "no_longer_enforced": sorted(f"{s}:{k}" for s, k in ea - eb)[:10]},
        }
        lab = _labels(labels)
        if lab:
            def by_label(keys: set[tuple[str, str]]) -> dict[str, int]:
                c: Counter = Counter()
                for scope, key in keys:
                    if scope == "account":
                        entry = lab.get(key)
                        c[f"{entry['label']}:{entry['group'] or 'plain'}" if entry else "unknown"] += 1
                    else:
                        c[scope] += 1
                return dict(c)

            report["newly_enforced_by_label"] = by_label(eb - ea)
            report["no_longer_enforced_by_label"] = by_label(ea - eb)
            score_py = Path(eval_dir) / "score.py"
            sa_score = _score(score_py, events, labels, tmp / "a.jsonl")
            sb_score = _score(score_py, events, labels, tmp / "b.jsonl")
            if sa_score and sb_score:
                keys = ("attack_leakage", "attack_account_recall", "benign_accounts_hit",
                        "benign_blocked_event_share")
                report["score"] = {"a": {k: sa_score[k] for k in keys}, "b": {k: sb_score[k] for k in keys}}
    return report


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="ratehound compare", description=__doc__)
    p.add_argument("events")
    p.add_argument("--config", help="config A (default: the shipped defaults)")
    p.add_argument("--against", required=True, help="config B, the candidate")
    p.add_argument("--labels", help="labels file (the scorer's format) to count attack and honest accounts")
    p.add_argument("--eval-dir", default="../shared/eval")
    a = p.parse_args(argv)
    print(json.dumps(compare(a.events, a.config, a.against, a.labels, a.eval_dir), indent=1))


if __name__ == "__main__":
    main()
