"""lab/memory.py: every per-key structure of the detector counted, per tracked account."""

from __future__ import annotations

import os
from itertools import pairwise

from lab.memory import events, measure
from lab.workers import process_cpu_seconds


def test_every_account_is_tracked_and_every_structure_counted():
    m = measure(3000)
    assert m["tracked_accounts"] == 3000 and m["events"] == 6000
    parts = m["structures_bytes_per_account"]
    assert {"accounts", "dedupe_ids", "networks", "clusters"} <= set(parts)
    assert all(parts[k] > 0 for k in ("accounts", "dedupe_ids", "networks", "clusters"))
    assert abs(sum(parts.values()) - m["counted_bytes_per_account"]) < len(parts)


def test_events_are_in_time_order_two_per_account():
    evs = [e for chunk in events(500) for e in chunk]
    assert len(evs) == 1000 and len({e.account_id for e in evs}) == 500
    assert all(a.ts < b.ts for a, b in pairwise(evs))


def test_cpu_seconds_of_this_process():
    before = process_cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert process_cpu_seconds(os.getpid()) > before
