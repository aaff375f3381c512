"""ratehound compare: two configs on one traffic file, differences counted by label."""

from __future__ import annotations

from pathlib import Path

import traffic
from backtest.compare import compare
from traffic.files import write_events, write_labels

EVAL_DIR = Path(__file__).resolve().parents[3] / "shared" / "eval"


def test_shadowing_a_rule_removes_its_enforcements_and_lets_attack_through(tmp_path):
    sim = traffic.generate("hydra", seed=3, duration_s=900.0, scale=0.05, attack_scale=0.1)
    events, labels = tmp_path / "e.jsonl.gz", tmp_path / "l.json.gz"
    write_events(sim.events(), str(events))
    write_labels(sim.labels(), str(labels))
    b = tmp_path / "b.yaml"
    b.write_text("version: b\npolicy:\n  rules:\n    campaign_cluster: {shadow: true}\n"
                 "    proxy_harvester: {shadow: true}\n    signup_cluster: {shadow: true}\n")
    r = compare(str(events), None, str(b), str(labels), str(EVAL_DIR))
    assert r["enforced_keys"]["a"] > 0
    assert r["enforced_keys"]["no_longer_enforced"] > 0 and r["enforced_keys"]["newly_enforced"] == 0
    assert set(r["no_longer_enforced_by_label"]) == {"attack:hydra"}
    assert r["score"]["b"]["attack_leakage"] > r["score"]["a"]["attack_leakage"]


def test_same_config_changes_nothing(tmp_path):
    sim = traffic.generate("burst", seed=4, duration_s=600.0, scale=0.05, attack_scale=0.1)
    events = tmp_path / "e.jsonl"
    write_events(sim.events(), str(events))
    r = compare(str(events), None, None)
    assert r["decisions"]["added"] == 0 and r["decisions"]["removed"] == 0
    assert r["enforced_keys"]["newly_enforced"] == 0 == r["enforced_keys"]["no_longer_enforced"]
