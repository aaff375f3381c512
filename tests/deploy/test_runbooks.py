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


def test_the_card_procedure_says_how_to_look_find_the_accounts_lift_and_when_not_to():
    text = _section((RUNBOOKS / "RatehoundCampaignDetected.md").read_text(), "## A card is blocked")
    for needle in ("redis-cli GET rh:d:payment:", "ratehound decision allow payment <payment_fp>",
                   "redis-cli SET rh:d:payment:", "policy.allow_payments", "card_accounts", "payment_fp",
                   "When NOT to lift", "X-Payment-Fp"):
        assert needle in text, f"RatehoundCampaignDetected.md, 'A card is blocked', does not mention {needle!r}"
    assert "ratehound decision allow payment" in (RUNBOOKS / "README.md").read_text()


# What the placeholders of the runbooks' commands stand for, as a person would fill them in.
PLACEHOLDERS = {"<id>": "acct_1", "<payment_fp>": "pay_7f3a", "<cidr>": "203.0.113.0/24", "<asn>": "64500"}


def _decision_commands() -> list[tuple[str, str]]:
    found = []
    for page in sorted(RUNBOOKS.glob("*.md")):
        for line in page.read_text().splitlines():
            start = line.find("ratehound decision ")
            if start >= 0 and "--reason" in line:  # a command, not a mention in the prose
                found.append((page.name, line[start:].split(";")[0].strip().strip("`")))
    return found


@pytest.mark.parametrize(("page", "command"), _decision_commands())
def test_runbook_decision_commands_parse_and_their_keys_validate(page, command):
    import shlex

    from stream.cli import build_parser
    from stream.overrides import build_override

    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    command = command.replace('"$id"', "acct_1")  # the loops over a file of account ids
    a = build_parser().parse_args(shlex.split(command)[1:])
    d = build_override(a.action, a.scope, a.key, a.ttl, a.reason, limit_rps=a.limit_rps, by="oncall", note=a.note)
    assert d.reason.startswith("manual:"), (page, command)


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
