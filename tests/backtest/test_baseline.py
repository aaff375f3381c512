"""Tests for backtest/baseline.py: fixed per-minute limits per account and network, a penalty once crossed."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backtest.baseline import static_limits, write_baseline
from backtest.files import InputError
from backtest.score import score

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_020.0  # 20 s before a minute boundary (1_790_000_040 s = 29,833,334 minutes)


def ev(t: float, account: str = "a", ip: str = "192.0.2.7") -> dict:
    return {"event_id": f"{account}-{t}", "ts": T0 + t, "account_id": account, "ip": ip}


def test_a_key_over_its_limit_is_throttled_once_per_penalty_and_again_after_it():
    events = [ev(t / 10) for t in range(0, 50)]  # 50 requests in 5 s, all in one minute
    events += [ev(700.0 + t / 10) for t in range(50)]  # after the penalty, in a later minute
    got = list(static_limits(events, acct_per_min=10, net_per_min=1000, ttl_s=600))
    assert [(round(d["ts"] - T0, 1), d["scope"], d["action"], d["ttl_s"]) for d in got] == [
        (1.0, "account", "throttle", 600), (701.0, "account", "throttle", 600)]
    assert "limit_rps" not in got[0] and got[0]["reason"] == "account_rate>10/min"


def test_the_count_starts_again_each_minute():
    # 8 requests before the minute boundary (T0 + 20 s) and 8 after: never over 10 in one minute.
    events = [ev(12.0 + t) for t in range(16)]
    assert list(static_limits(events, acct_per_min=10)) == []
    assert len(list(static_limits(events, acct_per_min=7))) == 1


def test_networks_are_ipv4_slash_24_and_ipv6_slash_48_across_accounts():
    events = [ev(t / 10, f"u{t}", f"198.51.100.{t}") for t in range(6)]
    events += [ev(1 + t / 10, f"v{t}", f"2001:db8:42:{t}::1") for t in range(6)]
    got = [(d["scope"], d["key"]) for d in static_limits(events, net_per_min=5)]
    assert got == [("network", "198.51.100.0/24"), ("network", "2001:db8:42::/48")]


def test_the_baseline_scores_as_the_static_limits_a_gateway_applies(tmp_path):
    events = [ev(t / 10) for t in range(100)]  # 10 requests a second for 10 s
    decisions = tmp_path / "baseline.jsonl"
    assert write_baseline(events_file(tmp_path, events), decisions, acct_per_min=30) == 1
    r = score(events, {"accounts": {"a": {"label": "attack", "group": "burst", "onset": T0}}}, decisions)
    # Over the limit at the 31st request (3.0 s); nothing passes from 4.0 s (latency 1 s) on.
    assert r["groups"]["attack:burst"]["covered_events"] == 59


def events_file(tmp_path: Path, events: list[dict]) -> Path:
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
    return path


def test_a_bad_events_file_leaves_no_decisions_file_and_one_clear_line(tmp_path):
    path = events_file(tmp_path, [ev(t) for t in range(100)])
    path.write_bytes(path.read_bytes()[:-40])  # cut short
    out = tmp_path / "decisions.jsonl"
    with pytest.raises(InputError, match="truncated"):
        write_baseline(path, out, acct_per_min=1)
    assert not out.exists() and list(tmp_path.iterdir()) == [path]
    cmd = subprocess.run([sys.executable, "-m", "backtest.baseline", str(path), "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert cmd.returncode == 1 and cmd.stderr.count("\n") == 1 and "events.jsonl.gz: truncated" in cmd.stderr
    assert not out.exists()
