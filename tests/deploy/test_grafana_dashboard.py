"""deploy/grafana: the dashboard's structure, its PromQL, and the provisioning that loads it."""

from __future__ import annotations

import re

import pytest
import yaml
from deployfiles import (
    DEPLOY,
    dashboard_exprs,
    dashboard_panels,
    exported_metric_names,
    metric_names,
    promtool_check_exprs,
    recorded_names,
    rules_of,
    substitute,
)

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# What on-call needs on the dashboard (the operations issue), as a query must read it.
REQUIRED = {
    "traffic by outcome": "job_outcome:ratehound_events:rate1m",
    "decisions by scope/action/reason": "job_scope_action_reason:ratehound_decisions:rate1m",
    "active enforcements": "ratehound_active_enforcements",
    "cards blocked (payment scope)": 'ratehound_active_enforcements{job=~"$job", scope="payment"}',
    "card decisions": 'job_scope_action_reason:ratehound_decisions:rate1m{job=~"$job", scope="payment"}',
    "top reasons": "topk(",
    "latency p50": "job:ratehound_event_to_decision_seconds:p50_5m",
    "latency p99": "job:ratehound_event_to_decision_seconds:p99_5m",
    "consumer lag (messages)": "ratehound_consumer_lag_messages",
    "event-time lag (seconds)": "ratehound_event_time_lag_seconds",
    "DLQ by reason": "job_reason:ratehound_dlq:rate1m",
    "sink writes ok/error": "ratehound_sink_writes_total",
    "sink queued": "ratehound_sink_queued",
    "tracked keys": "ratehound_tracked_keys",
    "evictions": "ratehound_evicted_keys_total",
    "config version": "ratehound_config_info",
}


def test_dashboard_metadata(dashboard):
    assert dashboard["uid"] == "ratehound" and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] == "prometheus"  # the provisioned data source's uid


def test_every_panel_has_queries_on_the_prometheus_variable(dashboard):
    panels = [p for p in dashboard_panels(dashboard) if p["type"] != "row"]
    assert len(panels) >= 10
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "panel titles must be unique (runbooks name them)"
    for p in panels:
        assert p.get("targets"), f"panel {p['title']!r} has no targets"
        assert p["datasource"] == DS, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DS, p["title"]
            assert t.get("expr", "").strip(), f"panel {p['title']!r} target {t['refId']} has no expr"


def test_panels_fit_the_grid_without_overlapping(dashboard):
    boxes = []
    for p in dashboard_panels(dashboard):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for other, o in boxes:
            overlap = (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                       and g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"])
            assert not overlap, f"{p['title']!r} overlaps {other!r}"
        boxes.append((p["title"], g))


@pytest.mark.parametrize("what", sorted(REQUIRED))
def test_dashboard_shows(dashboard, what):
    assert any(REQUIRED[what] in e for e in dashboard_exprs(dashboard).values()), f"no panel shows {what}"


def test_dashboard_reads_only_exported_metrics_and_defined_recording_rules(dashboard, rules_doc):
    exported = exported_metric_names()
    records = {r["record"] for r in rules_of(rules_doc) if "record" in r}
    for title, expr in dashboard_exprs(dashboard).items():
        assert not metric_names(expr) - exported, f"{title}: {metric_names(expr) - exported} not in stream/metrics.py"
        assert not recorded_names(expr) - records, f"{title}: undefined recording rules {recorded_names(expr) - records}"


def test_every_dashboard_expr_parses(dashboard, promtool, tmp_path):
    exprs = {title: substitute(e) for title, e in dashboard_exprs(dashboard).items()}
    for title, e in exprs.items():
        assert "$" not in e, f"{title}: a Grafana variable the tests do not substitute: {e!r}"
    rc, out = promtool_check_exprs(promtool, exprs, tmp_path)
    assert rc == 0, out


def test_provisioning_loads_the_dashboard_from_prometheus():
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert re.match(r"^https?://", source["url"])
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/ratehound.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
