"""The static-limit baseline: what a gateway does without a detector, written as contract decisions.

Fixed one-minute windows per account and per network (IPv4 /24, IPv6 /48, the
networks the detector keys), like envoy ratelimit or a WAF rate rule: the request
that takes a key over its limit in a window throttles the key, with no
``limit_rps`` (so nothing passes), for a 10-minute penalty; while the penalty holds
the key is not decided again.

    python -m backtest.baseline EVENTS [--acct-per-min 60] [--net-per-min 300] [--ttl 600] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from backtest.files import InputError, requests
from detectors.network import NetworkKeys

# Windows are counted per (scope, key, minute); older minutes are dropped when there are this many.
_MAX_WINDOWS = 2_000_000


def static_limits(events: str | Path | Iterable[Mapping[str, Any]], acct_per_min: int = 60, net_per_min: int = 300,
                  ttl_s: float = 600) -> Iterator[dict[str, Any]]:
    """The baseline's decisions for ``events`` (a path or event dicts), in event order.

    >>> ev = [{"event_id": str(i), "ts": 60.0 + i / 10, "account_id": "a", "ip": "192.0.2.7"} for i in range(5)]
    >>> [(d["ts"], d["scope"], d["key"], d["reason"]) for d in static_limits(ev, acct_per_min=3, net_per_min=4)]
    [(60.3, 'account', 'a', 'account_rate>3/min'), (60.4, 'network', '192.0.2.0/24', 'network_rate>4/min')]
    """
    nets = NetworkKeys(ipv4_prefix=24, ipv6_prefix=48)
    window: dict[tuple[str, str, int], int] = {}
    until: dict[tuple[str, str], float] = {}
    for r in requests(events):
        t = r.ts
        w = int(t // 60)
        for scope, key, limit in (("account", r.account_id, acct_per_min),
                                  ("network", nets.network_of(r.ip), net_per_min)):
            k = (scope, key, w)
            n = window[k] = window.get(k, 0) + 1
            if n > limit and until.get((scope, key), 0.0) <= t:
                until[(scope, key)] = t + ttl_s
                yield {"ts": t, "scope": scope, "key": key, "action": "throttle", "ttl_s": ttl_s,
                       "reason": f"{scope}_rate>{limit}/min"}
        if len(window) > _MAX_WINDOWS:
            window = {k: v for k, v in window.items() if k[2] >= w - 1}


def write_decisions(decisions: Iterable[dict[str, Any]], out: IO[bytes]) -> int:
    """Write decisions as JSON Lines; returns how many."""
    n = 0
    for d in decisions:
        out.write(orjson.dumps(d) + b"\n")
        n += 1
    return n


def write_baseline(events: str | Path, path: str | Path, **limits: Any) -> int:
    """The baseline's decisions for an events file, written to ``path`` only once all are (a temporary
    file moved into place), so a bad input leaves nothing half-written."""
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            n = write_decisions(static_limits(events, **limits), f)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m backtest.baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("events", help="request events, JSON Lines (.jsonl or .jsonl.gz)")
    p.add_argument("--acct-per-min", type=int, default=60, help="requests per account per minute (default 60)")
    p.add_argument("--net-per-min", type=int, default=300, help="requests per /24 or /48 per minute (default 300)")
    p.add_argument("--ttl", type=float, default=600, help="penalty in seconds (default 600)")
    p.add_argument("--out", default="-", help="decisions file (default: standard output)")
    a = p.parse_args(argv)
    limits = {"acct_per_min": a.acct_per_min, "net_per_min": a.net_per_min, "ttl_s": a.ttl}
    try:
        if a.out == "-":
            write_decisions(static_limits(a.events, **limits), sys.stdout.buffer)
        else:
            write_baseline(a.events, a.out, **limits)
    except InputError as exc:
        sys.exit(f"baseline: {exc}")


if __name__ == "__main__":
    main()
