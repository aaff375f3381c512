"""Tests for detectors/rules/__init__.py: the registry, and everything made from it."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import pytest

import detectors.rules
from detectors.config import ConfigError, DetectorConfig, defaults_yaml, load_config, parse_config
from detectors.rules import RULE_NAMES, RULES, markdown_table
from detectors.rules.base import STAGES, Rule, Strict
from lab.docs import README, THRESHOLDS, readme_with_table

ROOT = Path(__file__).resolve().parents[3]


def test_every_rule_is_a_complete_unit():
    assert RULES, "the registry found no rule"
    for r in RULES:
        assert issubclass(r, Rule)
        assert re.fullmatch(r"[a-z][a-z0-9_]*", r.name), r.name
        assert r.scope in ("account", "network", "asn", "payment"), r.name
        assert r.stage in STAGES, r.name
        assert issubclass(r.Thresholds, Strict), r.name
        assert r.summary and r.__doc__, r.name
        assert ">>>" in (vars(r).get("__doc__") or ""), f"{r.name}: no doctest on a tiny stream"


def test_every_rule_module_has_its_test_module():
    modules = [m.name for m in pkgutil.iter_modules(detectors.rules.__path__) if m.name != "base"]
    assert modules
    missing = [m for m in modules if not (ROOT / "tests" / "detectors" / "rules" / f"test_{m}.py").exists()]
    assert missing == [], f"a rule is one module plus its test: no tests/detectors/rules/test_<module>.py for {missing}"


def test_the_rule_table_and_the_rule_sections_come_from_the_registry():
    cfg = DetectorConfig()
    assert list(cfg.policy.rules) == [r.name for r in RULES]
    for r in RULES:
        assert cfg.policy.rules[r.name] == r.default
        assert cfg.section(r.section) == r.Thresholds()


def test_an_unknown_rule_name_in_a_thresholds_file_is_an_error_listing_the_known_ones(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("policy:\n  rules:\n    campaign_clustr: {action: review, ttl_s: 60}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "campaign_clustr" in msg and all(name in msg for name in RULE_NAMES)


def test_readme_rule_table_is_the_registrys():
    text = README.read_text()
    assert markdown_table() in text
    assert readme_with_table(text) == text, "the README's rule table is stale: run `make docs`"


def test_shipped_thresholds_restate_the_defaults():
    assert THRESHOLDS.read_text() == defaults_yaml(), "deploy/config/thresholds.yaml is stale: run `make docs`"
    assert load_config(THRESHOLDS) == DetectorConfig()
    assert parse_config({}) == DetectorConfig()
