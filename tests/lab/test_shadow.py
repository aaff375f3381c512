"""lab/shadow.py: two shadow workers on a recorded topic enforce what replay of the same file does."""

from __future__ import annotations

import pytest
import redis

import traffic
from backtest.compare import compare_decisions, read_decisions
from detectors.policy import ENFORCING
from lab.shadow import replay_decisions, run_shadow
from tests.stream.campaigns import by_group, campaigns_found
from traffic.files import write_events, write_labels

pytestmark = pytest.mark.integration


def test_two_shadow_workers_enforce_what_replay_does(broker, redis_url, tmp_path):
    sim = traffic.generate("mixed", seed=11, duration_s=900.0, scale=0.1)
    events, labels_path = tmp_path / "hour.jsonl", tmp_path / "labels.json"
    write_events(sim.events(), str(events))
    labels = sim.labels()["accounts"]
    write_labels(sim.labels(), str(labels_path))
    shadow, replayed = tmp_path / "shadow.jsonl", tmp_path / "replay.jsonl"
    config = tmp_path / "candidate.yaml"
    config.write_text("version: candidate\n")

    row = run_shadow(str(events), broker.url, broker.bootstrap, redis_url, shadow, workers=2, partitions=4,
                     config=str(config), name="test", log_dir=tmp_path)
    replay_decisions(str(events), str(config), replayed)

    assert row["app_id"] == "ratehound-shadow-test" and row["events"] > 50_000
    ds = {"shadow": read_decisions(str(shadow)), "replay": read_decisions(str(replayed))}
    assert all(d.config_version.startswith("candidate@") for d in ds["shadow"])  # the candidate thresholds
    assert [d.ts for d in ds["shadow"]] == sorted(d.ts for d in ds["shadow"])  # in event time, as replay's
    db = redis.Redis.from_url(redis_url)
    assert not list(db.scan_iter("rh:*")) and list(db.scan_iter("ratehound-shadow-test:*"))  # its own keys only

    # Read side by side from four partitions by two processes, where replay reads in order: the
    # tolerance of tests/stream/test_live_vs_replay.py (which campaign members are caught depends on
    # the order a cluster sees them in; no honest account replay spares).
    keys = {side: {(d.scope, d.key) for d in found if d.action in ENFORCING} for side, found in ds.items()}
    assert len(keys["replay"]) > 100  # the hour holds campaigns to catch
    honest = {side: {k for s, k in ks if s == "account" and labels.get(k, {}).get("label") == "benign"}
              for side, ks in keys.items()}
    assert honest["shadow"] <= honest["replay"]
    attack = {side: {k for s, k in ks if s == "account" and labels.get(k, {}).get("label") == "attack"}
              for side, ks in keys.items()}
    assert len(attack["shadow"]) >= 0.85 * len(attack["replay"])
    assert campaigns_found(attack["replay"], labels) <= {labels[k]["group"] for k in attack["shadow"]}, \
        {side: by_group(keys, labels) for side, keys in attack.items()}
    r = compare_decisions(str(replayed), str(shadow), str(labels_path), str(events))
    assert r["enforced_keys"]["newly_enforced"] == len(keys["shadow"] - keys["replay"])
    assert r["score"]["b"]["benign_accounts_hit"] <= r["score"]["a"]["benign_accounts_hit"]
