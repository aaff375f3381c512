"""Tests for backtest/score.py and backtest/enforcement.py: the contract's scoring semantics on tiny streams."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from backtest.files import InputError
from backtest.score import score
from detectors.policy import Decision, encode_decision

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000.0


def ev(i: int, t: float, account: str = "a", ip: str = "192.0.2.7", **extra) -> dict:
    return {"event_id": f"e{i}", "ts": T0 + t, "account_id": account, "ip": ip, **extra}


def dec(t: float, scope: str, key: str, action: str = "block", ttl: float = 100.0, **extra) -> dict:
    return {"ts": T0 + t, "scope": scope, "key": key, "action": action, "ttl_s": ttl, "reason": "test", **extra}


def labels(**groups: tuple[str, str | None, float | None]) -> dict:
    return {"accounts": {acct: {"label": lab, "group": grp, "onset": None if onset is None else T0 + onset}
                         for acct, (lab, grp, onset) in groups.items()}}


ATTACK_A = labels(a=("attack", "burst", 0.0))


def stopped(events: list[dict], decisions: list, latency: float = 1.0) -> list[float]:
    """The times (from T0) of the requests the decisions stop: where the covered count of a growing
    prefix of the stream steps up (scoring reads in order, so a prefix scores as it did in the whole)."""
    times, before = [], 0
    for n in range(1, len(events) + 1):
        report = score(events[:n], ATTACK_A, decisions, latency=latency)
        covered = sum(g["covered_events"] for g in report["groups"].values())
        if covered > before:
            times.append(round(events[n - 1]["ts"] - T0, 3))
        before = covered
    return times


def test_block_holds_from_ts_plus_latency_for_its_ttl_and_the_triggering_request_passes():
    events = [ev(i, float(i)) for i in range(12)]
    assert stopped(events, [dec(2.0, "account", "a", ttl=5.0)]) == [4.0, 5.0, 6.0, 7.0]
    assert stopped(events, [dec(2.0, "account", "a", ttl=5.0)], latency=0.0) == [3.0, 4.0, 5.0, 6.0]
    assert stopped(events, [dec(2.0, "account", "a", ttl=5.0)], latency=2.5) == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_throttle_lets_one_request_per_interval_through_and_without_a_limit_stops_all():
    events = [ev(i, i / 4) for i in range(40)]  # 4 requests a second for 10 s
    throttled = stopped(events, [dec(0.0, "account", "a", "throttle", ttl=20.0, limit_rps=1.0)])
    passed = [e["ts"] - T0 for e in events if e["ts"] - T0 > 1.0 and round(e["ts"] - T0, 3) not in throttled]
    assert passed == [1.25, 2.25, 3.25, 4.25, 5.25, 6.25, 7.25, 8.25, 9.25]
    assert len(stopped(events, [dec(0.0, "account", "a", "throttle", ttl=20.0)])) == 35  # all after 1 s


def test_allow_ends_what_is_in_force_then_and_not_what_comes_later():
    events = [ev(i, float(i)) for i in range(20)]
    ds = [dec(0.0, "account", "a", ttl=100.0), dec(4.0, "account", "a", "allow", ttl=1.0),
          dec(9.0, "account", "a", ttl=5.0)]
    assert stopped(events, ds) == [2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0]
    # An allow taken at the same instant as a decision lifts what held before, not that decision.
    same = [dec(0.0, "account", "a", ttl=100.0), dec(4.0, "account", "a", "allow"), dec(4.0, "account", "a", ttl=3.0)]
    assert stopped(events, same) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_review_only_flags():
    events = [ev(i, float(i)) for i in range(5)]
    r = score(events, ATTACK_A, [dec(0.0, "account", "a", "review"), dec(0.0, "asn", "64500", "review")])
    assert r["summary"]["review_keys"] == 2 and r["summary"]["attack_leakage"] == 1.0


def test_overlapping_decisions_the_most_restrictive_holds():
    events = [ev(i, i / 4, asn=64500) for i in range(100)]  # 4 requests a second for 25 s
    ds = [dec(0.0, "account", "a", "throttle", ttl=14.0, limit_rps=0.5),
          dec(4.0, "network", "192.0.2.0/24", ttl=2.0),  # a block inside the throttle
          dec(0.0, "asn", "64500", "throttle", ttl=30.0, limit_rps=2.0)]
    got = stopped(events, ds)
    passed = [e["ts"] - T0 for e in events if e["ts"] - T0 > 1.0 and round(e["ts"] - T0, 3) not in got]
    # The account's throttle lets one through every 2 s, the block none from 5 s to 7 s; from 15 s
    # only the looser ASN throttle holds: one every 0.5 s.
    assert [t for t in passed if t < 15.0] == [1.25, 3.25, 7.25, 9.25, 11.25, 13.25]
    assert [round(b - a, 3) for a, b in pairwise(passed[6:])] == [0.5] * (len(passed) - 7)
    assert passed[6] == 15.0 and passed[-1] == 24.5


@pytest.mark.parametrize("scope, key, event", [
    ("account", "a", {}),
    ("network", "192.0.2.0/24", {}),
    ("network", "192.0.0.0/16", {}),
    ("network", "2001:DB8:42::/48", {"ip": "2001:db8:42:7::1"}),
    ("network", "192.0.2.0/24", {"ip": "::ffff:192.0.2.9"}),  # an IPv4 client on a dual-stack socket
    ("asn", "64500", {"asn": 64500}),
    ("payment", "pay_1", {"payment_fp": "pay_1"}),
])
def test_each_scope_covers_its_requests(scope, key, event):
    events = [dict(ev(i, float(i)), **event) for i in range(6)]
    r = score(events, ATTACK_A, [dec(0.0, scope, key, ttl=10.0)])
    assert r["groups"]["attack:burst"]["covered_events"] == 4  # 2 s to 5 s
    assert r["summary"]["hits_by_scope"] == {f"attack:{scope}": 4}


def test_a_payment_decision_covers_an_account_opened_on_that_instrument_later():
    events = [ev(1, 1.0, "a", payment_fp="pay_1"), ev(2, 30.0, "b", payment_fp="pay_1"),
              ev(3, 31.0, "c", payment_fp="pay_2")]
    lab = labels(a=("attack", "hydra", 0.0), b=("attack", "hydra", 0.0), c=("benign", None, None))
    r = score(events, lab, [dec(1.0, "payment", "pay_1", ttl=3600.0)])
    assert r["groups"]["attack:hydra"]["accounts_hit"] == 1 and r["groups"]["benign:plain"]["accounts_hit"] == 0


def test_groups_split_before_onset_and_unlabelled_accounts_are_unknown():
    events = [ev(i, float(i)) for i in range(10)] + [ev(99, 20.0, "stranger")]
    lab = labels(a=("attack", "burst", 5.0))
    r = score(events, lab, [dec(0.0, "account", "a", ttl=3.0), dec(6.0, "account", "a", ttl=100.0),
                            dec(0.0, "account", "stranger", ttl=100.0)])
    g = r["groups"]
    assert g["attack:burst:pre_onset"]["events"] == 5 and g["attack:burst:pre_onset"]["covered_events"] == 2
    assert g["attack:burst"] == {"events": 5, "covered_events": 2, "accounts": 1, "accounts_hit": 1,
                                 "leakage": 0.6, "account_recall": 1.0, "time_to_first_enforcement_s": 3.0}
    assert g["unknown"]["blocked_event_share"] == 1.0
    assert r["summary"]["hits_by_scope"] == {"attack:account": 4, "unknown:account": 1}
    assert r["summary"]["attack_leakage"] == 0.6 and r["summary"]["benign_accounts_hit"] == 0


def test_explain_names_the_decision_behind_each_honest_account_hit_and_the_attack_accounts_missed():
    events = [ev(1, 1.0, "h1", ip="198.51.100.4"), ev(2, 2.0, "h2", ip="198.51.100.5"),
              ev(3, 3.0, "h1", ip="198.51.100.4"), ev(4, 50.0, "h2", ip="198.51.100.5"),
              ev(5, 51.0, "x1"), ev(6, 52.0, "x2")]
    lab = labels(h1=("benign", "corp_nat", None), h2=("benign", "corp_nat", None), h3=("benign", None, None),
                 x1=("attack", "hydra", 40.0), x2=("attack", "hydra", 40.0))
    ds = [dec(0.0, "account", "h1", ttl=10.0),
          {**dec(40.0, "network", "198.51.100.0/24", ttl=20.0), "reason": "network_takeover"},
          dec(50.0, "account", "x1", ttl=10.0)]
    r = score(events, lab, ds, explain=True)
    assert r["explain"]["benign:corp_nat"]["accounts_hit"] == {
        "h1": {"ts": T0 + 3.0, "scope": "account", "key": "h1", "action": "block", "reason": "test",
               "decision_ts": T0},
        "h2": {"ts": T0 + 50.0, "scope": "network", "key": "198.51.100.0/24", "action": "block",
               "reason": "network_takeover", "decision_ts": T0 + 40.0},
    }
    assert r["explain"]["attack:hydra"] == {"accounts_never_hit": ["x1", "x2"]}
    assert "explain" not in score(events, lab, ds)


def test_decisions_in_memory_and_in_a_file_score_alike(tmp_path):
    events = [ev(i, float(i), ip="2001:db8::1") for i in range(10)]
    ds = [Decision(ts=T0 + 1.0, scope="network", key="2001:db8::/48", action="throttle", ttl_s=5.0,
                   reason="r", score=1.0, evidence={}, limit_rps=0.5)]
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.writelines(encode_decision(d) + b"\n" for d in ds)
    assert score(events, ATTACK_A, ds) == score(events, ATTACK_A, path)
    assert score(events, ATTACK_A, ds)["groups"]["attack:burst"]["covered_events"] == 2  # 3 s and 5 s; 4 s passes


def test_a_malformed_decision_line_is_counted_and_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps(dec(0.0, "account", "a", ttl=10.0))
    path.write_text("\n".join([good, "{not json", '{"ts": 1}', json.dumps(dec(0.0, "galaxy", "a")),
                               json.dumps(dec(0.0, "network", "not-a-net")), ""]) + "\n")
    r = score([ev(i, float(i)) for i in range(5)], ATTACK_A, path)
    assert r["summary"]["decisions"] == 1 and r["summary"]["malformed_decision_lines"] == 4
    assert r["groups"]["attack:burst"]["covered_events"] == 3


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "No such file or directory"),
    (lambda p: p.write_bytes(gzip.compress(json.dumps(ev(0, 0.0)).encode() * 5000)[:300]), "truncated"),
    (lambda p: p.write_bytes(b'{"event_id": "e"}\n'), "not gzip data"),
    (lambda p: p.write_bytes(gzip.compress(b'{"event_id": "e", "ts": "soon", "account_id": "a", "ip": "x"}\n')),
     ":1: not a request event: Expected `float`, got `str` - at `$.ts`"),
])
def test_a_bad_events_file_is_one_clear_line(tmp_path, make, message):
    path = tmp_path / "events.jsonl.gz"
    make(path)
    with pytest.raises(InputError, match="^" + str(path)) as exc:
        score(path, ATTACK_A, [])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_bad_labels_file_is_one_clear_line(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"variant": "x"}')
    with pytest.raises(InputError, match="not a labels file"):
        score([ev(0, 0.0)], path, [])


@pytest.mark.parametrize("argv", [[sys.executable, "-m", "backtest.score"],
                                  [sys.executable, "-m", "stream.cli", "score"]])
def test_the_command_prints_the_report_and_a_bad_file_in_one_line(tmp_path, argv):
    events, lab, decisions = tmp_path / "e.jsonl", tmp_path / "l.json", tmp_path / "d.jsonl"
    events.write_text("\n".join(json.dumps(ev(i, float(i))) for i in range(6)) + "\n")
    lab.write_text(json.dumps(ATTACK_A))
    decisions.write_text(json.dumps(dec(0.0, "account", "a", ttl=3.0)) + "\n")
    out = subprocess.run([*argv, str(events), str(lab), str(decisions), "--latency", "0", "--explain"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["groups"]["attack:burst"]["covered_events"] == 2
    assert report["explain"] == {"attack:burst": {"accounts_never_hit": []}}
    bad = subprocess.run([*argv, str(tmp_path / "missing.jsonl"), str(lab), str(decisions)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().endswith("missing.jsonl: No such file or directory") and bad.stderr.count("\n") == 1
