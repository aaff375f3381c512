"""The scorer: how much attack traffic a decision stream stops, and how much honest traffic it hits.

Replays decisions against labelled events with the contract's semantics
(``backtest.enforcement``): a request is stopped when a decision on its account, on a
network containing its address, on its ASN or on its ``payment_fp`` is in force at its
``ts`` and does not let it through. One pass over the events in file order; the report,
per traffic group (``attack:hydra``, ``benign:plain``, attack accounts before their
onset as ``attack:hydra:pre_onset``, accounts without a label as ``unknown``), gives
leakage, account recall and time to first enforcement for attacks, and the share of
requests and accounts hit for everything else. ``explain`` adds, per benign group, the
accounts hit and the decision that stopped each one first, and per attack group the
accounts never hit.

Differences from the reference scorer (``../shared/eval/score.py``), none of which a
file following the contract meets: a decision with an unknown scope or action counts as
malformed; an IPv4 client seen as ``::ffff:a.b.c.d`` is in its IPv4 networks, as the
detector keys it; ``"asn": null`` is no ASN; a bad events or labels file is one clear line.

    python -m backtest.score EVENTS LABELS DECISIONS [--latency S] [--explain]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from backtest.enforcement import Enforcement, InForce, enforced
from backtest.files import InputError, Request, decision_records, read_labels, requests


def group_name(label: Mapping[str, Any] | None) -> str:
    """The traffic group of an account's label (``attack:hydra``, ``benign:plain``, ``unknown``)."""
    if label is None:
        return "unknown"
    return f"{label['label']}:{label.get('group') or 'plain'}"


class _Gate:
    """Which key, in the gateway's order, stops a request: account, networks, ASN, payment."""

    def __init__(self, enforcement: Enforcement):
        self.account = enforcement.by_scope["account"]
        self.network = enforcement.by_scope["network"]
        self.asn = enforcement.by_scope["asn"]
        self.payment = enforcement.by_scope["payment"]
        nets = [ipaddress.ip_network(k) for k in self.network]
        self.prefixes = sorted({(n.version, n.prefixlen) for n in nets})
        self.nets_of: dict[str, list[InForce]] = {}

    def _networks(self, ip: str) -> list[InForce]:
        found = self.nets_of.get(ip)
        if found is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                raise InputError(f"events: ip {ip!r} is not an address") from None
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            keys = (str(ipaddress.ip_network((addr, plen), strict=False)) for v, plen in self.prefixes
                    if v == addr.version)
            found = self.nets_of[ip] = [self.network[k] for k in keys if k in self.network]
        return found

    def stopper(self, r: Request) -> tuple[str, InForce] | None:
        """The scope and what is in force there that stops ``r``, or None if it gets through.

        Keys are asked in order until one stops the request: a throttle asked before then
        counts the request as one it let through."""
        t = r.ts
        f = self.account.get(r.account_id)
        if f is not None and f.stops(t):
            return "account", f
        if self.prefixes:
            for f in self._networks(r.ip):
                if f.stops(t):
                    return "network", f
        if self.asn and r.asn is not None and r.asn is not msgspec.UNSET:
            f = self.asn.get(str(r.asn))
            if f is not None and f.stops(t):
                return "asn", f
        if self.payment and r.payment_fp is not None:
            f = self.payment.get(r.payment_fp)
            if f is not None and f.stops(t):
                return "payment", f
        return None


class _Group:
    """One traffic group's counts."""

    __slots__ = ("events", "covered", "accounts", "hit", "first_hit", "first_stops")

    def __init__(self) -> None:
        self.events = 0
        self.covered = 0
        self.accounts: set[str] = set()
        self.hit: set[str] = set()
        self.first_hit: float | None = None  # the first stopped request's ts, in file order
        self.first_stops: dict[str, dict[str, Any]] = {}  # with explain: per account hit, what stopped it


def is_attack_group(g: str) -> bool:
    """Whether a report's group is attack traffic after its onset (the groups leakage is measured on)."""
    return g.startswith("attack:") and not g.endswith(":pre_onset")


def score(events: str | Path | Iterable[Mapping[str, Any]], labels: str | Path | Mapping[str, Any],
          decisions: str | Path | Iterable[Any], latency: float = 1.0, explain: bool = False) -> dict:
    """The report for ``decisions`` on labelled ``events``: ``{"summary": ..., "groups": ...}``.

    Each argument is a path (plain or ``.gz``) or the same thing in memory: event dicts, the
    labels document, decision dicts or ``Decision`` objects. Raises ``InputError``.

    >>> ev = [{"event_id": f"e{i}", "ts": float(i), "account_id": "x", "ip": "192.0.2.1"} for i in range(10)]
    >>> lab = {"accounts": {"x": {"label": "attack", "group": "burst", "onset": 0.0}}}
    >>> dec = [{"ts": 2.0, "scope": "network", "key": "192.0.2.0/24", "action": "block", "ttl_s": 5}]
    >>> r = score(ev, lab, dec)   # in force from 3 s to 8 s: the requests at 4, 5, 6, 7 s are stopped
    >>> r["groups"]["attack:burst"]["leakage"], r["summary"]["hits_by_scope"]
    (0.6, {'attack:network': 4})
    """
    accounts = read_labels(labels)
    name_of = {acct: group_name(lab) for acct, lab in accounts.items()}
    onset_of = {acct: float(lab["onset"]) for acct, lab in accounts.items()
                if lab.get("label") == "attack" and lab.get("onset") is not None}
    enforcement = enforced(decision_records(decisions), latency)
    gate = _Gate(enforcement)
    groups: dict[str, _Group] = {}
    scope_hits: dict[str, int] = {}
    for r in requests(events):
        acct, t = r.account_id, r.ts
        g = name_of.get(acct, "unknown")
        onset = onset_of.get(acct)
        if onset is not None and t < onset:
            g += ":pre_onset"
        grp = groups.get(g)
        if grp is None:
            grp = groups[g] = _Group()
        grp.events += 1
        grp.accounts.add(acct)
        stop = gate.stopper(r)
        if stop is None:
            continue
        scope, f = stop
        grp.covered += 1
        if explain and acct not in grp.hit:
            c = f.cause_at(t)
            grp.first_stops[acct] = {"ts": t, "scope": c.scope, "key": c.key, "action": c.action,
                                     "reason": c.reason, "decision_ts": c.ts}
        grp.hit.add(acct)
        hit_key = f"{g.split(':')[0]}:{scope}"
        scope_hits[hit_key] = scope_hits.get(hit_key, 0) + 1
        if grp.first_hit is None:
            grp.first_hit = t
    report = {"summary": _summary(groups, enforcement, scope_hits), "groups": _rows(groups, onset_of, name_of)}
    if explain:
        report["explain"] = _explain(groups)
    return report


def _rows(groups: dict[str, _Group], onset_of: dict[str, float], name_of: dict[str, str]) -> dict[str, dict]:
    onsets: dict[str, float] = {}
    for acct, onset in onset_of.items():
        onsets[name_of[acct]] = min(onsets.get(name_of[acct], float("inf")), onset)
    rows = {}
    for g in sorted(groups):
        c = groups[g]
        row: dict[str, Any] = {"events": c.events, "covered_events": c.covered, "accounts": len(c.accounts),
                               "accounts_hit": len(c.hit)}
        if is_attack_group(g):
            row["leakage"] = round(1 - c.covered / max(1, c.events), 4)
            row["account_recall"] = round(len(c.hit) / max(1, len(c.accounts)), 4)
            row["time_to_first_enforcement_s"] = (round(c.first_hit - onsets[g], 1)
                                                  if c.first_hit is not None and g in onsets else None)
        else:
            row["blocked_event_share"] = round(c.covered / max(1, c.events), 5)
            row["accounts_hit_share"] = round(len(c.hit) / max(1, len(c.accounts)), 5)
        rows[g] = row
    return rows


def _summary(groups: dict[str, _Group], enforcement: Enforcement, scope_hits: dict[str, int]) -> dict[str, Any]:
    att = [c for g, c in groups.items() if is_attack_group(g)]
    ben = [c for g, c in groups.items() if g.startswith("benign:")]
    ben_accounts = sum(len(c.accounts) for c in ben)
    return {
        "decisions": enforcement.decisions,
        "malformed_decision_lines": enforcement.malformed,
        "attack_leakage": round(1 - sum(c.covered for c in att) / max(1, sum(c.events for c in att)), 4),
        "attack_account_recall": round(sum(len(c.hit) for c in att) / max(1, sum(len(c.accounts) for c in att)),
                                       4),
        "benign_accounts_hit": sum(len(c.hit) for c in ben),
        "benign_accounts_hit_share": round(sum(len(c.hit) for c in ben) / max(1, ben_accounts), 5),
        "benign_blocked_event_share": round(sum(c.covered for c in ben) / max(1, sum(c.events for c in ben)), 5),
        "review_keys": len(enforcement.review_keys),
        "hits_by_scope": scope_hits,
    }


def _explain(groups: dict[str, _Group]) -> dict[str, dict]:
    """Per benign group the accounts hit, each with its first stopped request and the decision behind it;
    per attack group the accounts never hit."""
    out: dict[str, dict] = {}
    for g in sorted(groups):
        c = groups[g]
        if g.startswith("benign:"):
            out[g] = {"accounts_hit": dict(sorted(c.first_stops.items(), key=lambda kv: kv[1]["ts"]))}
        elif is_attack_group(g):
            out[g] = {"accounts_never_hit": sorted(c.accounts - c.hit)}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (``python -m backtest.score`` and ``ratehound score``)."""
    p.add_argument("events", help="request events, JSON Lines (.jsonl or .jsonl.gz), in time order")
    p.add_argument("labels", help="labels (.json or .json.gz): {\"accounts\": {id: {label, group, onset}}}")
    p.add_argument("decisions", help="decisions, JSON Lines (.jsonl or .jsonl.gz)")
    p.add_argument("--latency", type=float, default=1.0,
                   help="seconds from a decision's ts until the gateway enforces it (default 1)")
    p.add_argument("--explain", action="store_true",
                   help="also list the honest accounts hit (and by which decision) and the attack accounts missed")


def run(a: argparse.Namespace, prog: str = "score") -> None:
    """Print the report as JSON; a bad input file is one line and exit status 1."""
    try:
        report = score(a.events, a.labels, a.decisions, latency=a.latency, explain=a.explain)
    except InputError as exc:
        sys.exit(f"{prog}: {exc}")
    print(json.dumps(report, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m backtest.score", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
