"""ratehound compare: two configs on one traffic file, differences counted by label."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import traffic
from backtest.compare import compare
from traffic.files import write_events, write_labels

ROOT = Path(__file__).resolve().parents[2]


def _hydra(tmp_path: Path) -> tuple[Path, Path]:
    """A labelled quarter hour of the hydra scenario: the events file and the labels file."""
    sim = traffic.generate("hydra", seed=3, duration_s=900.0, scale=0.05, attack_scale=0.1)
    events, labels = tmp_path / "e.jsonl.gz", tmp_path / "l.json.gz"
    write_events(sim.events(), str(events))
    write_labels(sim.labels(), str(labels))
    return events, labels


def test_shadowing_a_rule_removes_its_enforcements_and_lets_attack_through(tmp_path):
    events, labels = _hydra(tmp_path)
    b = tmp_path / "b.yaml"
    b.write_text("version: b\npolicy:\n  rules:\n    campaign: {shadow: true}\n"
                 "    proxy_harvester: {shadow: true}\n    payment_campaign: {shadow: true}\n")
    r = compare(str(events), None, str(b), str(labels))
    assert r["enforced_keys"]["a"] > 0
    assert r["enforced_keys"]["no_longer_enforced"] > 0 and r["enforced_keys"]["newly_enforced"] == 0
    lifted = r["no_longer_enforced_by_label"]
    assert "attack:hydra" in lifted and set(lifted) <= {"attack:hydra", "payment"}  # accounts, and their cards
    assert r["score"]["b"]["attack_leakage"] > r["score"]["a"]["attack_leakage"]


def test_same_config_changes_nothing(tmp_path):
    sim = traffic.generate("burst", seed=4, duration_s=600.0, scale=0.05, attack_scale=0.1)
    events = tmp_path / "e.jsonl"
    write_events(sim.events(), str(events))
    r = compare(str(events), None, None)
    assert r["decisions"]["added"] == 0 and r["decisions"]["removed"] == 0
    assert r["enforced_keys"]["newly_enforced"] == 0 == r["enforced_keys"]["no_longer_enforced"]


def test_the_command_scores_both_configs_given_labels_and_a_bad_labels_file_is_one_line(tmp_path):
    sim = traffic.generate("hydra", seed=3, duration_s=900.0, scale=0.05, attack_scale=0.1)
    events, labels = tmp_path / "e.jsonl.gz", tmp_path / "l.json"
    write_events(sim.events(), str(events))
    write_labels(sim.labels(), str(labels))
    argv = [sys.executable, "-m", "stream.cli", "compare", str(events), "--against", str(tmp_path / "b.yaml")]
    (tmp_path / "b.yaml").write_text("version: b\n")
    out = subprocess.run([*argv, "--labels", str(labels)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    score = json.loads(out.stdout)["score"]
    assert score["a"] == score["b"] and score["a"]["attack_account_recall"] > 0
    labels.write_text("[]")
    bad = subprocess.run([*argv, "--labels", str(labels)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == "" and bad.stderr.count("\n") == 1
    assert "l.json: not a labels file" in bad.stderr


def test_two_decisions_files_compare_as_two_configs_do(tmp_path):
    # A shadow run's decisions (lab/shadow.py) against replay's: the report of `compare`, from files.
    from backtest.compare import compare_decisions
    from backtest.replay import replay_to_file
    from detectors.config import DetectorConfig, load_config

    events, labels = _hydra(tmp_path)
    b = tmp_path / "b.yaml"
    b.write_text("version: b\npolicy:\n  rules:\n    campaign: {shadow: true}\n")
    da, db = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with open(da, "wb") as fa, open(db, "wb") as fb:
        replay_to_file(str(events), DetectorConfig(), fa)
        replay_to_file(str(events), load_config(str(b)), fb)
    assert compare_decisions(str(da), str(db), str(labels), str(events)) == compare(str(events), None, str(b),
                                                                                     str(labels))
    argv = [sys.executable, "-m", "stream.cli", "compare", "--decisions", str(da), str(da)]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["enforced_keys"]["newly_enforced"] == 0
    both = subprocess.run([*argv, "--against", str(b)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert both.returncode == 2 and "not with --decisions" in both.stderr
    da.write_text("{}\n")
    bad = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "a.jsonl:1: not a decision" in bad.stderr
