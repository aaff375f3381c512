"""``make eval``'s runner: replaying scenarios in time order and in the order a worker reads them."""

from __future__ import annotations

import gzip
from pathlib import Path

from lab.evaluate import _as_read, _generate, run_one
from traffic.arrival import out_of_step

EVAL_DIR = Path(__file__).resolve().parents[3] / "shared" / "eval"


def test_events_as_a_worker_reads_them_are_the_same_lines_reordered_once(tmp_path):
    events = tmp_path / "x-s1.jsonl.gz"
    lines = [b'{"event_id":"e%d","ts":%d.0,"account_id":"a","ip":"192.0.2.1"}\n' % (i, i) for i in range(6000)]
    with gzip.open(events, "wb") as f:
        f.writelines(lines)
    read = _as_read(events, tmp_path)
    with gzip.open(read, "rb") as f:
        got = f.readlines()
    assert got == out_of_step(lines) and got != lines and sorted(got) == sorted(lines)
    stamp = read.stat().st_mtime_ns
    assert _as_read(events, tmp_path) == read and read.stat().st_mtime_ns == stamp  # cached


def test_out_of_step_replay_is_scored_against_the_events_in_time_order(tmp_path):
    events, labels = _generate("mixed", 5, 900.0, 0.2, tmp_path)
    in_order = run_one("mixed", events, labels, EVAL_DIR, tmp_path, None)
    as_read = run_one("mixed", events, labels, EVAL_DIR, tmp_path, None, arrival="out-of-step")
    assert in_order["events"] == as_read["events"] > 10_000
    ours, theirs = in_order["ours"]["summary"], as_read["ours"]["summary"]
    assert ours["attack_account_recall"] > 0.5
    # The scorer reads the in-order file both times: the same events, so the same groups and sizes.
    assert {g: v["events"] for g, v in in_order["ours"]["groups"].items()} == \
        {g: v["events"] for g, v in as_read["ours"]["groups"].items()}
    assert theirs["benign_accounts_hit"] == ours["benign_accounts_hit"] == 0
    assert abs(theirs["attack_account_recall"] - ours["attack_account_recall"]) <= 0.02
    assert (tmp_path / "mixed-s5.out-of-step.decisions.jsonl").exists()
