"""deploy/prometheus: the rules parse, their promtool unit tests pass, and they cover every alert."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import yaml
from deployfiles import (
    DEPLOY,
    ROOT,
    RULE_TESTS,
    RULES,
    exported_metric_names,
    metric_names,
    recorded_names,
    rules_of,
)

SEVERITIES = {"critical", "warning", "info"}


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_check_rules(promtool):
    out = _promtool(promtool, "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_check_config_of_the_scrape_example(promtool):
    out = _promtool(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


def test_scrape_example_scrapes_the_workers_every_5s_with_the_rules():
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "ratehound")
    assert job["scrape_interval"] == "5s"
    assert [t for sc in job["static_configs"] for t in sc["targets"]]
    rule_files = [(DEPLOY / "prometheus" / f).resolve() for f in cfg["rule_files"]]
    assert RULES.resolve() in rule_files


def test_promtool_unit_tests_pass(promtool):
    files = sorted(RULE_TESTS.glob("*.yml"))
    assert files, "no promtool unit tests in deploy/prometheus/tests"
    out = _promtool(promtool, "test", "rules", *map(str, files))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout


def test_every_alert_has_severity_summary_description_and_runbook(rules_doc):
    alerts = [r for r in rules_of(rules_doc) if "alert" in r]
    assert len({a["alert"] for a in alerts}) >= 9
    for a in alerts:
        name = a["alert"]
        assert name.startswith("Ratehound"), name
        assert a.get("labels", {}).get("severity") in SEVERITIES, name
        ann = a.get("annotations", {})
        assert {"summary", "description", "runbook_url"} <= ann.keys(), name
        assert ann["runbook_url"] == f"deploy/runbooks/{name}.md", name
        assert (ROOT / ann["runbook_url"]).is_file(), f"{name}: {ann['runbook_url']} is missing"


def _unit_tests() -> list[dict]:
    return [t for f in sorted(RULE_TESTS.glob("*.yml")) for t in yaml.safe_load(f.read_text())["tests"]]


def test_every_alert_is_unit_tested_firing_and_not_firing(rules_doc):
    firing, silent = defaultdict(set), set()
    for t in _unit_tests():
        assert t.get("input_series"), t["name"]
        for case in t.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                for exp in case["exp_alerts"]:
                    firing[case["alertname"]].add(exp["exp_labels"]["severity"])
                    assert exp.get("exp_annotations"), f"{t['name']}: check the annotations too"
            else:
                silent.add(case["alertname"])
    for a in rules_of(rules_doc):
        if "alert" in a:
            assert a["labels"]["severity"] in firing[a["alert"]], \
                f"{a['alert']} ({a['labels']['severity']}) is never tested firing"
            assert a["alert"] in silent, f"{a['alert']} is never tested not firing"


def test_every_recording_rule_has_a_value_test(rules_doc):
    checked = {case["expr"].strip() for t in _unit_tests() for case in t.get("promql_expr_test", [])
               if case.get("exp_samples")}
    for r in rules_of(rules_doc):
        if "record" in r:
            assert r["record"] in checked, f"{r['record']} has no promql_expr_test with samples"


def test_rules_read_only_metrics_the_worker_exports(rules_doc):
    exported = exported_metric_names()
    records = {r["record"] for r in rules_of(rules_doc) if "record" in r}
    for r in rules_of(rules_doc):
        name = r.get("record") or r.get("alert")
        unknown = metric_names(r["expr"]) - exported
        assert not unknown, f"{name} reads {unknown}, not in stream/metrics.py"
        undefined = recorded_names(r["expr"]) - records
        assert not undefined, f"{name} reads recording rules that do not exist: {undefined}"
