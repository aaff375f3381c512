"""Tests for detectors/rules/population_outlier.py: the shared model's outliers, for review only."""

from __future__ import annotations

from detectors.config import DetectorConfig, parse_config
from detectors.policy import Policy
from detectors.population import features
from detectors.population_stage import PopulationStage


def _stage(doc: dict) -> tuple[PopulationStage, list]:
    cfg = parse_config({"population": {"warmup_samples": 50, "window_size": 50, **doc}})
    return PopulationStage(cfg, Policy(cfg.policy)), []


def _warm(stage: PopulationStage, out: list) -> None:
    for i in range(200):
        stage.process_one(f"a{i}", float(i), features(0.1, 0.1, 0.1, 0.5, 0.0, 1.0, 1e7), out)


def test_an_outlier_is_reviewed_with_its_features_as_evidence():
    stage, out = _stage({})
    _warm(stage, out)
    assert out == []
    stage.process_one("odd", 200.0, features(30.0, 20.0, 0.01, 20.0, 1.0, 0.0, 100.0), out)
    [d] = out
    assert (d.key, d.reason, d.action) == ("odd", "population_outlier", "review")
    assert d.score >= 0.97 and set(d.evidence) == set(features(1, 1, 1, 1, 0, 1, 1))


def test_review_score_is_the_threshold():
    stage, out = _stage({"review_score": 1.0})
    _warm(stage, out)
    stage.process_one("odd", 200.0, features(30.0, 20.0, 0.01, 20.0, 1.0, 0.0, 100.0), out)
    assert [d for d in out if d.score < 1.0] == []


def test_never_enforced_by_default():
    assert DetectorConfig().policy.rules["population_outlier"].action == "review"
