"""Paths and PromQL helpers shared by the deploy/ tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "ratehound.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ratehound.json"
RUNBOOKS = DEPLOY / "runbooks"

# What Grafana substitutes before a query reaches Prometheus; the values are what the tests use.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$job": "ratehound"}


def substitute(expr: str) -> str:
    """A dashboard expression as Prometheus would receive it (Grafana's variables replaced)."""
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    return expr


def dashboard_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(dash: dict[str, Any]) -> dict[str, str]:
    """``{"<panel title> [refId]": expr}`` for every query of the dashboard, annotations included."""
    exprs = {}
    for p in dashboard_panels(dash):
        for t in p.get("targets", []):
            exprs[f"{p['title']} [{t['refId']}]"] = t["expr"]
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs[f"annotation {a['name']}"] = a["expr"]
    return exprs


def rules_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in doc["groups"] for r in g["rules"]]


# Metric names a PromQL expression reads: drop recording-rule names (they have colons),
# strings and label matchers first, so `job:ratehound_x:rate5m` or `reason="ratehound_y"`
# do not count.
_RECORDED = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*:[a-zA-Z0-9_:]*")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC = re.compile(r"\bratehound_[a-z0-9_]+")


def recorded_names(expr: str) -> set[str]:
    return set(_RECORDED.findall(_STRINGS.sub('""', expr)))


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(_RECORDED.sub(" ", _STRINGS.sub('""', expr))))


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def exported_metric_names() -> set[str]:
    """Every series name a worker can expose, from the registry of stream/metrics.py."""
    from stream import metrics

    names = set()
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                    "gauge": ("",)}.get(family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def promtool_check_exprs(promtool: str, exprs: dict[str, str], tmp: Path) -> tuple[int, str]:
    """Let promtool parse PromQL expressions by checking them as recording rules of a scratch file."""
    import subprocess

    labels = list(exprs)
    doc = {"groups": [{"name": "scratch", "rules": [{"record": f"scratch:expr_{i}", "expr": exprs[k]}
                                                    for i, k in enumerate(labels)]}]}
    path = tmp / "scratch.rules.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    for i in reversed(range(len(labels))):  # name the query, not its index, in errors (expr_12 before expr_1)
        text = text.replace(f"scratch:expr_{i}", labels[i])
    return out.returncode, text
