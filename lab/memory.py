"""Detector memory per tracked account: every per-key structure, at a million accounts.

Feeds one in-process ``Detector`` (all stages, the default thresholds) two requests from each of
``n`` distinct accounts over an hour of event time, with a spread like a provider's: most
accounts alone on their network, some networks shared, a fifth on IPv6, three in five accounts
with a prompt of their own and the others with one of ``n / 1000`` templates,
most accounts with their own card and a few cards shared, a few dozen clients. Then it reports

- ``rss_bytes_per_account``: the process's resident memory grown over the run (``/proc/self/statm``,
  after a full collection), divided by the accounts tracked. What a worker pays, the allocator's
  slack included; the headline figure.
- ``structures``: the bytes each structure holds (``sys.getsizeof`` over everything it reaches,
  each object counted once, in the order listed: an account id held by the account table and by
  a network is counted with the accounts), per tracked account.

    python -m lab.memory [--accounts 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from detectors.config import DetectorConfig
from detectors.events import Event
from detectors.pipeline import Detector

CHUNK = 20_000
CLIENTS = [f"sdk-python/1.{i}.0" for i in range(30)] + [f"Mozilla/5.0 app/{i}" for i in range(20)]


def _mix(i: int) -> int:
    """A cheap, fixed 32-bit scramble: spreads account numbers over networks, prompts and cards."""
    i = (i ^ 0x9E3779B9) * 0x85EBCA6B & 0xFFFFFFFF
    i ^= i >> 13
    return i * 0xC2B2AE35 & 0xFFFFFFFF


def events(n: int, t0: float = 1.7e9, span_s: float = 3600.0) -> Iterator[list[Event]]:
    """Two requests from each of ``n`` accounts, ``span_s / 2`` apart, in time order, in chunks."""
    total = 2 * n
    step = span_s / total
    templates = max(100, n // 1000)  # prompts many accounts send (SimHash: random 64 bits)
    chunk: list[Event] = []
    for j in range(total):
        a = j % n
        h = _mix(a)
        net = h % max(1000, n // 3)  # about three accounts a network, most of them alone on theirs
        if h & 0xF < 3:  # a fifth on IPv6 (one /64 each, inside a shared /48)
            ip = f"2001:db8:{net & 0xFFFF:x}:{a & 0xFFFF:x}::{(h >> 8) & 0xFF:x}"
        else:
            ip = f"{11 + (net >> 16) % 200}.{(net >> 8) & 255}.{net & 255}.{1 + (h >> 4) % 250}"
        prompt = a if h % 5 < 3 else n + h % templates  # three in five write their own, two use a template
        card = None if h % 10 == 0 else f"card_{(a if h % 50 else h % 5000):x}"  # 2 % share 5,000 cards
        chunk.append(Event(
            event_id=f"e{j:x}", ts=t0 + j * step, account_id=f"acct_{a:012x}", ip=ip, asn=64512 + net % 3000,
            user_agent=CLIENTS[h % len(CLIENTS)], input_tokens=200 + h % 2000, output_tokens=100 + (h >> 3) % 900,
            account_created_ts=t0 - 86400.0 * (1 + h % 900), prompt_fp=f"{_mix(prompt) << 32 | _mix(prompt ^ 0x5BD1E995):016x}",
            payment_fp=card, model="m-large", status=200))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def deep_size(root: Any, seen: set[int]) -> int:
    """Bytes of ``root`` and everything it reaches that ``seen`` does not hold yet (added to it).
    Classes, modules and functions are code, not state, and are not followed."""
    skip = (type, type(sys), type(deep_size))
    total = 0
    stack = [root]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, skip):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


def structures(det: Detector) -> dict[str, Any]:
    """The detector's per-key structures, by the name they are reported under, accounts first."""
    a, g = det.accounts, det.groups
    return {
        "accounts": a.accounts,
        "dedupe_ids": a.recent,
        "networks": g.networks,
        "clusters": g.clusters,
        "ip_cache": [a.netkeys],
        "group_decided": g.__dict__.get("_decided", {}),
        "published_decisions": det.published,
        "population_model": det.population,
    }


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(n: int) -> dict:
    """The figures for ``n`` accounts (see the module's docstring)."""
    gc.collect()
    gc.freeze()  # what is already there is not the detector's
    rss0 = _rss()
    t = time.perf_counter()
    det = Detector(DetectorConfig())
    decisions = 0
    for chunk in events(n):
        decisions += len(det.process(chunk)[0])
    seconds = time.perf_counter() - t
    chunk = []
    gc.collect()
    rss = _rss() - rss0
    tracked = len(det.accounts.accounts.states)
    seen: set[int] = set()
    sizes = {name: deep_size(s, seen) for name, s in structures(det).items()}
    counts = {"accounts": tracked, "networks": len(det.groups.networks.networks),
              "clusters": len(det.groups.clusters.clusters), "dedupe_ids": len(det.accounts.recent)}
    gc.unfreeze()
    return {"accounts": n, "tracked_accounts": tracked, "events": 2 * n, "seconds": round(seconds, 1),
            "decisions": decisions, "rss_bytes_per_account": round(rss / tracked),
            "counted_bytes_per_account": round(sum(sizes.values()) / tracked),
            "structures_bytes_per_account": {k: round(v / tracked, 1) for k, v in sizes.items()},
            "keys": counts}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.accounts)))


if __name__ == "__main__":
    main()
