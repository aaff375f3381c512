"""The registry of detection rules: every module in this package, every rule class in it.

A rule is one module (or one family per module) with its test; nothing else lists it. The config's
rule table (``policy.rules``) and its thresholds sections, the stages' rule lists, the README's rule
table and the shipped thresholds file are all made from ``RULES``.

>>> [r.name for r in RULES if r.stage == "network"]
['network_fanout', 'network_takeover']
>>> RULE_NAMES["account_burst"].scope
'account'
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from detectors.rules.base import STAGES, Rule, RuleConfig, Strict


def _discover() -> tuple[type[Rule[Any]], ...]:
    found: list[type[Rule[Any]]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Rule) and "name" in vars(obj) and obj.__module__ == module.__name__:
                found.append(obj)
    names = [r.name for r in found]
    if len(set(names)) != len(names):
        raise ImportError(f"two rules share a name: {sorted(n for n in names if names.count(n) > 1)}")
    owners: dict[str, type[Strict]] = {}
    for r in found:
        if owners.setdefault(r.section, r.Thresholds) is not r.Thresholds:
            raise ImportError(f"rule {r.name}: section {r.section!r} is owned by another thresholds model")
    return tuple(sorted(found, key=lambda r: (STAGES.index(r.stage), r.order, r.name)))


RULES: tuple[type[Rule[Any]], ...] = _discover()
RULE_NAMES: dict[str, type[Rule[Any]]] = {r.name: r for r in RULES}


def default_rules() -> dict[str, RuleConfig]:
    """The rule table's defaults: every rule's action, TTL and limit, by name."""
    return {r.name: r.default for r in RULES}


def sections() -> dict[str, type[Strict]]:
    """The thresholds sections the rules own, by section name."""
    return {r.section: r.Thresholds for r in RULES}


def markdown_table() -> str:
    """The README's rule table, from the registry."""
    rows = ["| rule | scope | what fires it | default action |", "|---|---|---|---|"]
    for r in RULES:
        d = r.default
        action = f"{d.action} {d.limit_rps:g}/s" if d.action == "throttle" else d.action
        ttl = f"{d.ttl_s / 3600:g} h" if d.ttl_s >= 3600 else f"{d.ttl_s / 60:g} min"
        rows.append(f"| `{r.name}` | {r.scope} | {r.summary} | {action}, {ttl} |")
    return "\n".join(rows)
