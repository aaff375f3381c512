"""deploy/runbooks: one page per alert, with the sections on-call needs and commands that work."""

from __future__ import annotations

import json
import re

import pytest
from deployfiles import RUNBOOKS, dashboard_panels, load_rules, promtool_check_exprs, rules_of

ALERTS = sorted({r["alert"] for r in rules_of(load_rules()) if "alert" in r})
SECTIONS = ("## What it means", "## How to check", "## What to do", "## When to escalate")
# Alerts about enforcement itself: their pages carry the whole lifting procedure.
ENFORCEMENT = ("RatehoundCampaignDetected", "RatehoundEnforcementStorm")


def _section(text: str, heading: str) -> str:
    start = text.index(heading) + len(heading)
    nxt = text.find("\n## ", start)
    return text[start:] if nxt < 0 else text[start:nxt]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_is_an_alert():
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(ALERTS)
    index = (RUNBOOKS / "README.md").read_text()
    for alert in ALERTS:
        assert f"({alert}.md)" in index, f"{alert} missing from deploy/runbooks/README.md"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_has_the_sections(alert):
    text = (RUNBOOKS / f"{alert}.md").read_text()
    assert text.startswith(f"# {alert}\n")
    for heading in SECTIONS:
        assert heading in text, f"{alert}.md has no {heading!r}"
    assert "ratehound decision allow" in text, f"{alert}.md: how to lift a wrong block"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_checks_name_real_dashboard_panels(alert, dashboard):
    titles = {p["title"] for p in dashboard_panels(dashboard)}
    checks = _section((RUNBOOKS / f"{alert}.md").read_text(), "## How to check")
    named = re.findall(r"\*\*(.+?)\*\*", checks, flags=re.S)
    assert named, f"{alert}.md: 'How to check' names no dashboard panel"
    for title in named:
        assert re.sub(r"\s+", " ", title) in titles, f"{alert}.md names panel {title!r}, not on the dashboard"


@pytest.mark.parametrize("alert", ENFORCEMENT)
def test_enforcement_runbooks_show_how_to_check_and_lift_a_block(alert):
    text = (RUNBOOKS / f"{alert}.md").read_text()
    for needle in ("redis-cli GET rh:d:account:", "ratehound replay", "ratehound decision allow account",
                   "redis-cli SET rh:d:account:", "redis-cli DEL rh:d:account:", "policy.allow_accounts"):
        assert needle in text, f"{alert}.md does not mention {needle!r}"


def test_readme_has_the_common_procedures():
    text = (RUNBOOKS / "README.md").read_text()
    for needle in ("redis-cli GET rh:d:account:", "ratehound replay", "ratehound decision allow account",
                   "redis-cli SET rh:d:account:", "redis-cli DEL rh:d:account:", "policy.allow_accounts",
                   "shadow: true", "rh:heartbeat"):
        assert needle in text, f"README.md does not mention {needle!r}"


def test_the_redis_cli_pin_outranks_every_detector_decision():
    from detectors.policy import STRENGTH

    for page in RUNBOOKS.glob("*.md"):
        for body in re.findall(r"redis-cli SET rh:d:\w+:\S+ '(\{.*?\})'", page.read_text()):
            doc = json.loads(body)
            assert doc["action"] == "allow", page.name
            # the workers' set-unless-stronger write must leave the pin alone
            assert doc["strength"] > max(STRENGTH.values()), page.name


def test_links_between_runbooks_resolve():
    for page in RUNBOOKS.glob("*.md"):
        for target, anchor in re.findall(r"\]\(([\w.]+\.md)(?:#([\w-]+))?\)", page.read_text()):
            linked = RUNBOOKS / target
            assert linked.is_file(), f"{page.name} links to missing {target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page.name}: no #{anchor} in {target}"


def test_runbook_queries_parse(promtool, tmp_path):
    exprs = {}
    for page in sorted(RUNBOOKS.glob("*.md")):
        for i, block in enumerate(re.findall(r"```promql\n(.*?)```", page.read_text(), flags=re.S)):
            exprs[f"{page.stem} query {i + 1}"] = block.strip()
    assert exprs
    rc, out = promtool_check_exprs(promtool, exprs, tmp_path)
    assert rc == 0, out
