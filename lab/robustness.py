"""The robustness matrix: per row of scenarios and per seed, and over the seeds, whether detection holds.

A run's figures (``cell``): attack leakage against the static baseline's, each attack
group's leakage and time to first enforcement, honest accounts hit (count, share, and
the benign groups with any hit) and honest requests blocked. Over a row's seeds
(``over_seeds``): mean and worst leakage, each group's worst leakage and slowest first
enforcement, and honest accounts hit summed over the seeds.

>>> r = {"row": "burst", "kind": "attack", "seed": 1, "events": 10, "ours": {
...     "summary": {"attack_leakage": 0.1, "benign_accounts_hit": 1, "benign_accounts_hit_share": 0.5,
...                 "benign_blocked_event_share": 0.01},
...     "groups": {"attack:burst": {"leakage": 0.1, "time_to_first_enforcement_s": 3.0},
...                "benign:nat": {"accounts": 2, "accounts_hit": 1}}}}
>>> r["baseline"] = {"summary": {**r["ours"]["summary"], "attack_leakage": 0.9}, "groups": {}}
>>> c = cell(r)
>>> c["attack_groups"], c["honest_groups_hit"]
({'burst': {'leakage': 0.1, 'first_enforcement_s': 3.0}}, {'nat': 1})
>>> over_seeds([c, dict(c, attack_leakage=0.3)])["attack_leakage"]
{'mean': 0.2, 'worst': 0.3}
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from backtest.score import is_attack_group


def cell(result: dict[str, Any]) -> dict[str, Any]:
    """One run's figures, from its scorer reports (``ours`` and ``baseline``)."""
    ours, base = result["ours"], result["baseline"]
    s, b = ours["summary"], base["summary"]
    attack = {g.split(":", 1)[1]: {"leakage": v["leakage"], "first_enforcement_s": v["time_to_first_enforcement_s"]}
              for g, v in ours["groups"].items() if is_attack_group(g)}
    honest = {g.split(":", 1)[1]: v for g, v in ours["groups"].items() if g.startswith("benign:")}
    return {
        "seed": result.get("seed"),
        "events": result["events"],
        "attack_leakage": s["attack_leakage"] if attack else None,
        "static_attack_leakage": b["attack_leakage"] if attack else None,
        "attack_groups": attack,
        "honest_accounts": sum(v["accounts"] for v in honest.values()),
        "honest_accounts_hit": s["benign_accounts_hit"],
        "honest_accounts_hit_share": s["benign_accounts_hit_share"],
        "honest_groups_hit": {g: v["accounts_hit"] for g, v in honest.items() if v["accounts_hit"]},
        "honest_requests_blocked_share": s["benign_blocked_event_share"],
        "static_honest_accounts_hit": b["benign_accounts_hit"],
        "static_honest_requests_blocked_share": b["benign_blocked_event_share"],
    }


def _slowest(times: list[float | None]) -> float | None:
    """The slowest first enforcement; None (never enforced) if any run never enforced."""
    return None if any(t is None for t in times) else max(t for t in times if t is not None)


def over_seeds(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """A row's figures over its runs (one per seed)."""
    leaks = [c["attack_leakage"] for c in cells if c["attack_leakage"] is not None]
    static = [c["static_attack_leakage"] for c in cells if c["static_attack_leakage"] is not None]
    groups: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        for g, v in c["attack_groups"].items():
            groups.setdefault(g, []).append(v)
    honest, hit = sum(c["honest_accounts"] for c in cells), sum(c["honest_accounts_hit"] for c in cells)
    groups_hit: Counter[str] = Counter()
    for c in cells:
        groups_hit.update(c["honest_groups_hit"])
    return {
        "seeds": [c["seed"] for c in cells],
        "attack_leakage": {"mean": round(sum(leaks) / len(leaks), 4), "worst": max(leaks)} if leaks else None,
        "static_attack_leakage_mean": round(sum(static) / len(static), 4) if static else None,
        "attack_groups": {g: {"worst_leakage": max(v["leakage"] for v in vs),
                              "slowest_first_enforcement_s": _slowest([v["first_enforcement_s"] for v in vs]),
                              "runs": len(vs)} for g, vs in sorted(groups.items())},
        "honest_accounts": honest,
        "honest_accounts_hit": hit,
        "honest_accounts_hit_share": round(hit / max(1, honest), 5),
        "honest_groups_hit": dict(sorted(groups_hit.items())),
        "honest_requests_blocked_share_worst": max(c["honest_requests_blocked_share"] for c in cells),
        "static_honest_accounts_hit": sum(c["static_honest_accounts_hit"] for c in cells),
        "static_honest_requests_blocked_share_worst": max(c["static_honest_requests_blocked_share"] for c in cells),
    }


def matrix(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs grouped by row, in the order the rows first appear: each run's cell and the row over its seeds."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r["row"], {"row": r["row"], "kind": r["kind"], "scenario": r.get("scenario"),
                                         "runs": []})
        row["runs"].append(cell(r))
    for row in rows.values():
        row["over_seeds"] = over_seeds(row["runs"])
    return list(rows.values())


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def _secs(x: float | None) -> str:
    return "never" if x is None else f"{x:g} s"


def _counts(hit: dict[str, int]) -> str:
    return ", ".join(f"{g} {n}" for g, n in hit.items()) or "-"


def _line(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def markdown(rows: list[dict[str, Any]], per_run: bool = True) -> str:
    """The matrix as a Markdown table: a line per run (unless not ``per_run``), then a line over the seeds
    where a row has several."""
    lines = [_line("row", "kind", "seed", "attack leakage (static)", "per attack group: leakage, first enforcement",
                   "honest accounts hit", "benign groups hit", "honest requests blocked",
                   "static: honest hit / blocked"),
             _line(*["---"] * 9)]
    for row in rows:
        for c in row["runs"] if per_run or len(row["runs"]) == 1 else ():
            groups = "; ".join(f"{g} {_pct(v['leakage'])}, {_secs(v['first_enforcement_s'])}"
                               for g, v in sorted(c["attack_groups"].items()))
            leak = f"{_pct(c['attack_leakage'])} ({_pct(c['static_attack_leakage'])})" if c["attack_groups"] else "-"
            lines.append(_line(
                row["row"], row["kind"], "-" if c["seed"] is None else c["seed"], leak, groups or "-",
                f"{c['honest_accounts_hit']} ({_pct(c['honest_accounts_hit_share'], 2)})",
                _counts(c["honest_groups_hit"]), _pct(c["honest_requests_blocked_share"]),
                f"{c['static_honest_accounts_hit']} / {_pct(c['static_honest_requests_blocked_share'])}"))
        if len(row["runs"]) > 1:
            a = row["over_seeds"]
            groups = "; ".join(f"{g} worst {_pct(v['worst_leakage'])}, {_secs(v['slowest_first_enforcement_s'])}"
                               for g, v in a["attack_groups"].items())
            m = a["attack_leakage"]
            leak = (f"mean {_pct(m['mean'])}, worst {_pct(m['worst'])} "
                    f"(static mean {_pct(a['static_attack_leakage_mean'])})") if m else "-"
            lines.append(_line(
                f"**{row['row']}**", row["kind"], "all", leak, groups or "-",
                f"{a['honest_accounts_hit']} of {a['honest_accounts']:,} ({_pct(a['honest_accounts_hit_share'], 2)})",
                _counts(a["honest_groups_hit"]), f"worst {_pct(a['honest_requests_blocked_share_worst'])}",
                f"{a['static_honest_accounts_hit']} / worst {_pct(a['static_honest_requests_blocked_share_worst'])}"))
    return "\n".join(lines)
