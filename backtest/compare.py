"""``ratehound compare``: what changes between two threshold files on one traffic file.

Replays the file under both configs and reports decisions added and removed,
keys newly enforced or no longer enforced, and, given the labels, how many of
those are attack and honest accounts, with the scorer's leakage and collateral
for each config. This is the SRE's check before a new threshold enforces.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

import msgspec

from backtest.files import InputError, lines, read_labels
from backtest.replay import replay
from backtest.score import group_name, score
from detectors.config import load_config
from detectors.policy import ENFORCING, Decision


def _run(events: str, config: str | None) -> list[Decision]:
    # On two cores where there are two: the same decisions, sooner.
    return list(replay(events, load_config(config), processes=2 if (os.cpu_count() or 1) >= 2 else 1))


def _enforced(decisions: list[Decision]) -> set[tuple[str, str]]:
    return {(d.scope, d.key) for d in decisions if d.action in ENFORCING}


def read_decisions(path: str) -> list[Decision]:
    """The decisions of a JSON Lines file (``ratehound replay --out``, or a decisions topic dumped)."""
    out = []
    for n, line in lines(path):
        try:
            out.append(_decode_decision(line))
        except msgspec.MsgspecError as exc:
            raise InputError(f"{path}:{n}: not a decision: {exc}") from None
    return out


_decode_decision = msgspec.json.Decoder(Decision).decode


def compare(events: str, config_a: str | None, config_b: str | None, labels: str | None = None) -> dict:
    """The report as a dict (also printed by the command); with ``labels``, the scorer's figures for each
    config as well. A bad labels file raises ``InputError`` before any replay."""
    lab = read_labels(labels) if labels else {}
    return report(_run(events, config_a), _run(events, config_b), lab, events)


def compare_decisions(decisions_a: str, decisions_b: str, labels: str | None = None,
                      events: str | None = None) -> dict:
    """The report for two decisions files; the scorer's figures too given ``labels`` and ``events``."""
    lab = read_labels(labels) if labels else {}
    return report(read_decisions(decisions_a), read_decisions(decisions_b), lab, events)


def report(a: list[Decision], b: list[Decision], lab: dict, events: str | None = None) -> dict:
    """Decisions added and removed, keys newly or no longer enforced, by label given ``lab``, scored
    given ``lab`` and ``events``."""
    sig = lambda ds: Counter((x.scope, x.key, x.action, x.reason) for x in ds)  # noqa: E731
    sa, sb = sig(a), sig(b)
    ea, eb = _enforced(a), _enforced(b)
    out: dict = {
        "decisions": {"a": len(a), "b": len(b), "added": sum((sb - sa).values()),
                      "removed": sum((sa - sb).values())},
        "enforced_keys": {"a": len(ea), "b": len(eb), "newly_enforced": len(eb - ea),
                          "no_longer_enforced": len(ea - eb)},
        "examples": {"newly_enforced": sorted(f"{s}:{k}" for s, k in eb - ea)[:10],
                     "no_longer_enforced": sorted(f"{s}:{k}" for s, k in ea - eb)[:10]},
    }
    if lab:
        def by_label(keys: set[tuple[str, str]]) -> dict[str, int]:
            return dict(Counter(group_name(lab.get(key)) if scope == "account" else scope for scope, key in keys))

        out["newly_enforced_by_label"] = by_label(eb - ea)
        out["no_longer_enforced_by_label"] = by_label(ea - eb)
        if events is not None:
            keys = ("attack_leakage", "attack_account_recall", "benign_accounts_hit", "benign_blocked_event_share")
            summaries = {side: score(events, {"accounts": lab}, ds)["summary"] for side, ds in (("a", a), ("b", b))}
            out["score"] = {side: {k: s[k] for k in keys} for side, s in summaries.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="ratehound compare", description=__doc__)
    p.add_argument("events", nargs="?")
    p.add_argument("--config", help="config A (default: the shipped defaults)")
    p.add_argument("--against", help="config B, the candidate")
    p.add_argument("--decisions", nargs=2, metavar=("A", "B"), help="two decisions files instead of two configs")
    p.add_argument("--labels", help="labels file (the scorer's format): count attack and honest accounts, score both")
    a = p.parse_args(argv)
    if (a.decisions is None) == (a.against is None) or (a.against is not None and a.events is None):
        p.error("give EVENTS --against CONFIG, or --decisions A B")
    try:
        if a.decisions:
            out = compare_decisions(a.decisions[0], a.decisions[1], labels=a.labels, events=a.events)
        else:
            out = compare(a.events, a.config, a.against, a.labels)
    except InputError as exc:
        sys.exit(f"ratehound compare: {exc}")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
