"""Cross-check: the project's scorer and static baseline give exactly the reference's output.

The reference is ``../shared/eval`` beside the repository (``score.py``, ``baseline_static.py``),
run as subprocesses on simulated labelled files. When it is not there the tests skip and say so.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

import traffic
from backtest.baseline import static_limits, write_decisions
from backtest.replay import replay_to_file
from backtest.score import score
from detectors.config import DetectorConfig
from traffic.files import write_events, write_labels

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "eval"

pytestmark = pytest.mark.skipif(
    not (REFERENCE / "score.py").exists() or not (REFERENCE / "baseline_static.py").exists(),
    reason=f"no reference scorer to cross-check against: {REFERENCE} (score.py, baseline_static.py) "
           "is not beside the repository")


@cache
def simulated(name: str) -> tuple[tuple[dict, ...], dict]:
    sim = traffic.generate(name, seed=3, duration_s=900.0, scale=0.05, attack_scale=0.1)
    return tuple(sim.events()), sim.labels()


@pytest.fixture(scope="module", params=["ipv6", "mixed"])
def labelled(request, tmp_path_factory) -> tuple[Path, Path, tuple[dict, ...]]:
    """A simulated quarter hour written as the files the scorers read: IPv4 and IPv6 clients, ASNs,
    payment fingerprints, honest and attack groups."""
    events, labels = simulated(request.param)
    d = tmp_path_factory.mktemp(request.param)
    write_events(events, str(d / "events.jsonl.gz"))
    write_labels(labels, str(d / "labels.json.gz"))
    return d / "events.jsonl.gz", d / "labels.json.gz", events


def reference(script: str, *args: str | Path) -> str:
    out = subprocess.run([sys.executable, str(REFERENCE / script), *map(str, args)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def crafted(events: tuple[dict, ...], seed: int = 5) -> list[dict | str]:
    """Decisions on the keys of ``events`` exercising every scope and action, overlaps, an allow, the
    event that triggers a decision, two malformed lines, and a few hundred random ones besides."""
    rng = random.Random(seed)
    v4 = [e for e in events if ":" not in e["ip"]]
    v6 = [e for e in events if ":" in e["ip"]]
    busiest = Counter(e["account_id"] for e in events).most_common(1)[0][0]
    busy = [e for e in events if e["account_id"] == busiest]
    t0, t_end = events[0]["ts"], events[-1]["ts"]

    def d(ts: float, scope: str, key: str, action: str = "block", ttl: float = 120.0, **extra) -> dict:
        return {"ts": ts, "scope": scope, "key": key, "action": action, "ttl_s": ttl, "reason": "crafted", **extra}

    def net(ip: str, prefix: int) -> str:
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    trigger = v4[len(v4) // 3]
    out: list[dict | str] = [
        d(trigger["ts"], "account", trigger["account_id"], ttl=300.0),  # its own event must get through
        d(busy[10]["ts"], "account", busiest, "throttle", 200.0, limit_rps=0.5),
        d(busy[20]["ts"], "account", busiest, "throttle", 60.0),  # no limit_rps: overlapping, stops all
        d(busy[30]["ts"], "account", busiest, "throttle", 400.0, limit_rps=2.0),
        d(busy[40]["ts"], "account", busiest, "allow"),  # lifts all three
        d(busy[50]["ts"], "account", busiest, ttl=30.0),  # after the allow: holds
        d(busy[60]["ts"], "account", busiest, "allow"),  # at the same instant as a block: the block holds
        d(busy[60]["ts"], "account", busiest, ttl=30.0),
        d(v4[200]["ts"], "network", net(v4[200]["ip"], 24), ttl=90.0),
        d(v4[300]["ts"], "network", net(v4[300]["ip"], 16), "throttle", 300.0, limit_rps=1.0),
        d(v4[400]["ts"], "asn", str(v4[400]["asn"]), "throttle", 100.0, limit_rps=3.0),
        d(v4[500]["ts"], "asn", str(v4[500]["asn"]), ttl=20.0),
        d(v4[600]["ts"], "payment", v4[600]["payment_fp"], ttl=900.0),
        d(v4[700]["ts"], "account", v4[700]["account_id"], "review"),
        d(v4[700]["ts"], "network", net(v4[700]["ip"], 24), "review"),
        "{not json",
        '{"ts": 1, "scope": "account"}',
    ]
    if v6:
        out += [d(v6[50]["ts"], "network", net(v6[50]["ip"], 48).upper(), ttl=200.0),  # not in canonical form
                d(v6[80]["ts"], "network", net(v6[80]["ip"], 64), "throttle", 300.0, limit_rps=0.2)]
    keys = [("account", lambda e: e["account_id"]), ("network", lambda e: net(e["ip"], 24 if ":" not in e["ip"]
                                                                                  else 48)),
            ("asn", lambda e: str(e["asn"])), ("payment", lambda e: e["payment_fp"])]
    for _ in range(300):
        e = rng.choice(events)
        scope, key_of = rng.choice(keys)
        action = rng.choice(("block", "throttle", "throttle", "review", "allow"))
        extra = {"limit_rps": rng.choice((0.1, 1.0, 5.0))} if action == "throttle" and rng.random() < 0.7 else {}
        ts = e["ts"] if rng.random() < 0.5 else rng.uniform(t0, t_end)
        out.append(d(ts, scope, key_of(e), action, rng.choice((5.0, 60.0, 600.0)), **extra))
    return sorted(out, key=lambda x: x["ts"] if isinstance(x, dict) else 0.0)


def write_lines(path: Path, decisions: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in decisions))
    return path


@pytest.mark.parametrize("latency", ["1", "0", "2.5"])
def test_crafted_decisions_score_exactly_as_the_reference_scores_them(labelled, tmp_path, latency):
    events, labels, evs = labelled
    decisions = write_lines(tmp_path / "crafted.jsonl", crafted(evs))
    ours = score(events, labels, decisions, latency=float(latency))
    theirs = reference("score.py", events, labels, decisions, "--latency", latency)
    assert json.dumps(ours, indent=1) + "\n" == theirs
    s = ours["summary"]
    assert s["malformed_decision_lines"] == 2 and s["review_keys"] > 0
    assert {scope for scope in ("account", "network", "asn", "payment")
            if any(k.endswith(f":{scope}") for k in s["hits_by_scope"])} == {"account", "network", "asn", "payment"}


def test_the_event_that_triggers_a_decision_gets_through_as_the_reference_lets_it(labelled, tmp_path):
    events, labels, evs = labelled
    # With no latency a decision taken at an event's ts holds from exactly then: that event still passes.
    times: dict[str, list[float]] = {}
    for e in evs:
        times.setdefault(e["account_id"], []).append(e["ts"])
    acct, (first, second) = next((a, ts) for a, ts in times.items() if len(ts) == 2 and ts[0] < ts[1])
    for taken, covered in ((first, 1), (second, 0)):
        path = write_lines(tmp_path / "d.jsonl", [{"ts": taken, "scope": "account", "key": acct,
                                                   "action": "block", "ttl_s": 3600.0, "reason": "x"}])
        ours = score(events, labels, path, latency=0.0)
        assert json.dumps(ours, indent=1) + "\n" == reference("score.py", events, labels, path, "--latency", "0")
        assert sum(g["covered_events"] for g in ours["groups"].values()) == covered


@pytest.mark.parametrize("limits", [[], ["--acct-per-min", "20", "--net-per-min", "40"]])
def test_the_baseline_writes_the_reference_baseline_byte_for_byte_and_scores_alike(labelled, tmp_path, limits):
    events, labels, _ = labelled
    theirs = reference("baseline_static.py", events, *limits)
    ours = subprocess.run([sys.executable, "-m", "backtest.baseline", str(events), *limits], cwd=ROOT,
                          capture_output=True, timeout=120, check=True).stdout.decode()
    assert ours == theirs
    path = tmp_path / "baseline.jsonl"
    with open(path, "wb") as f:
        n = write_decisions(static_limits(events, **({"acct_per_min": 20, "net_per_min": 40} if limits else {})), f)
    assert path.read_text() == theirs and n == theirs.count("\n")
    assert json.dumps(score(events, labels, path), indent=1) + "\n" == reference("score.py", events, labels, path)


def test_the_detectors_decisions_score_exactly_as_the_reference_scores_them(labelled, tmp_path):
    events, labels, _ = labelled
    decisions = tmp_path / "decisions.jsonl"
    with open(decisions, "wb") as f:
        assert replay_to_file(events, DetectorConfig(), f)
    ours = score(events, labels, decisions)
    assert json.dumps(ours, indent=1) + "\n" == reference("score.py", events, labels, decisions)
    assert ours["summary"]["attack_account_recall"] > 0
