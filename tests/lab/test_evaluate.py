"""``make eval``'s runner: replaying scenarios in time order and in the order a worker reads them."""

from __future__ import annotations

import gzip
import json

import pytest

from lab.evaluate import DEFAULT_ROWS_SPEC, Row, _as_read, _generate, evaluate, load_rows, main, run_one
from lab.robustness import matrix
from traffic.arrival import out_of_step


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
    in_order = run_one(events, labels, tmp_path, None)
    as_read = run_one(events, labels, tmp_path, None, arrival="out-of-step")
    assert in_order["events"] == as_read["events"] > 10_000
    ours, theirs = in_order["ours"]["summary"], as_read["ours"]["summary"]
    assert ours["attack_account_recall"] > 0.5
    # The scorer reads the in-order file both times: the same events, so the same groups and sizes.
    assert {g: v["events"] for g, v in in_order["ours"]["groups"].items()} == \
        {g: v["events"] for g, v in as_read["ours"]["groups"].items()}
    assert theirs["benign_accounts_hit"] == ours["benign_accounts_hit"] == 0
    # Read out of step, clusters see members in another order and decisions carry a watermark that ran
    # ahead of the account's own events: a few accounts are found later or not at all (measured on this
    # file: recall 0.77 -> 0.75, leakage 0.10 -> 0.15, mostly bursts and stolen keys decided later).
    assert abs(theirs["attack_account_recall"] - ours["attack_account_recall"]) <= 0.04, (theirs, ours)
    assert theirs["attack_leakage"] - ours["attack_leakage"] <= 0.06, (theirs, ours)
    assert (tmp_path / events.name.replace(".jsonl.gz", ".out-of-step.decisions.jsonl")).exists()


def test_rows_run_over_every_seed_and_the_matrix_sums_them(tmp_path):
    rows = (Row("bursts", "burst", "attack"), Row("quiet hour", "benign", "honest"))
    results = evaluate(rows, (1, 2), None, tmp_path, duration=600.0, scale=0.03, jobs=1)
    assert [(r["row"], r["seed"], r["kind"]) for r in results] == [
        ("bursts", 1, "attack"), ("bursts", 2, "attack"), ("quiet hour", 1, "honest"), ("quiet hour", 2, "honest")]
    table = matrix(results)
    assert [(r["row"], [c["seed"] for c in r["runs"]]) for r in table] == [("bursts", [1, 2]), ("quiet hour", [1, 2])]
    bursts, quiet = table
    assert set(bursts["over_seeds"]["attack_groups"]) == {"burst"} and bursts["over_seeds"]["attack_leakage"]
    assert quiet["over_seeds"]["attack_leakage"] is None and quiet["over_seeds"]["attack_groups"] == {}
    for row, r in ((bursts, results[:2]), (quiet, results[2:])):
        assert row["over_seeds"]["honest_accounts_hit"] == sum(x["ours"]["summary"]["benign_accounts_hit"] for x in r)
        assert row["over_seeds"]["honest_accounts"] == sum(
            v["accounts"] for x in r for g, v in x["ours"]["groups"].items() if g.startswith("benign:"))
    worst = max(x["ours"]["groups"]["attack:burst"]["leakage"] for x in results[:2])
    assert bursts["over_seeds"]["attack_groups"]["burst"]["worst_leakage"] == worst


def test_the_command_names_its_seeds_says_the_dev_hour_is_left_out_and_writes_the_json(tmp_path, capsys):
    main(["--out", str(tmp_path / "eval"), "--scenarios", "burst", "--seeds", "3", "4", "--duration", "600",
          "--scale", "0.03", "--jobs", "1", "--dev", str(tmp_path / "nowhere")])
    out = capsys.readouterr().out
    assert out.startswith("seeds: 3 4; rows: burst; arrival: in-order\n")
    assert f"dev hour: left out, not found: {tmp_path / 'nowhere'}" in out
    assert "| burst | attack | 3 |" in out and "| burst | attack | 4 |" in out and "| **burst** | attack | all |" in out
    saved = json.loads((tmp_path / "eval" / "matrix.json").read_text())
    assert saved["seeds"] == [3, 4] and saved["dev_hour"] is None
    assert [r["seed"] for r in json.loads((tmp_path / "eval" / "results.json").read_text())] == [3, 4]
    summary = (tmp_path / "eval" / "summary.md").read_text()  # the README's kind of table: a line per row
    assert "| **burst** | attack | all |" in summary and "| burst | attack | 3 |" not in summary


def test_rows_load_from_a_module_and_a_bad_spec_or_scenario_is_one_clear_error(capsys):
    from traffic.matrix import EVAL_ROWS, IN_DISTRIBUTION, MATRIX

    assert load_rows(DEFAULT_ROWS_SPEC) == EVAL_ROWS == MATRIX + IN_DISTRIBUTION
    with pytest.raises(ValueError, match="no_such_module"):
        load_rows("no_such_module:ROWS")
    with pytest.raises(ValueError, match="is not a row"):
        load_rows("traffic.matrix:HELD_OUT_SEEDS")
    with pytest.raises(SystemExit):
        main(["--scenarios", "hydra", "nonsense"])
    assert "unknown scenario nonsense" in capsys.readouterr().err
