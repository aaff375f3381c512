"""Tests for detectors/rules/network_fanout.py, on hand-built streams through the whole detector."""

from __future__ import annotations

import random

from detectors.config import DetectorConfig, PolicyConfig
from tests.detectors.streams import (
    DAY,
    OLD,
    T0,
    Stream,
    compromised_stream,
    on,
    run,
)


def test_compromised_keys_waking_up_on_one_network_are_blocked():
    onset = T0 + 900.0
    decisions, _ = run(compromised_stream(onset).sorted())
    victims = on(decisions, "victim")
    fanout = {d.key for d in victims if d.reason == "network_fanout" and d.action == "block"}
    assert len(fanout) >= 12
    first = min(d.ts for d in victims if d.reason == "network_fanout")
    assert first - onset <= 120.0
    assert on(decisions, "person") == []
    ev = next(d.evidence for d in victims if d.reason == "network_fanout")
    assert ev["network_awakened_accounts"] >= DetectorConfig().section("fanout").min_accounts
    # The network itself, wholly taken over, is blocked in CIDR form.
    nets = [(d.key, d.reason) for d in decisions if d.scope == "network"]
    assert nets == [("203.0.113.0/24", "network_takeover")]


def test_compromised_keys_with_sparse_earlier_use_are_blocked():
    rng = random.Random(4)
    onset = T0 + 1200.0
    s = Stream()
    s.background(T0, onset + 400.0, people=10)
    for i in range(15):
        created = OLD + i * DAY
        # Their owners used them now and then, from home.
        s.every(
            f"victim{i}",
            f"100.{64 + i}.{i}.7",
            T0 + rng.uniform(0, 300),
            onset - 10.0,
            300.0,
            account_created_ts=created,
        )
        s.every(
            f"victim{i}",
            f"203.0.113.{i + 1}",
            onset + rng.uniform(0, 30),
            onset + 300.0,
            1.0,
            jitter=0.2,
            rng=rng,
            account_created_ts=created,
        )
    decisions, _ = run(s.sorted())
    fanout = {d.key for d in on(decisions, "victim") if d.reason == "network_fanout"}
    assert len(fanout) >= 12
    assert on(decisions, "person") == []


def test_allowlisted_network_gets_no_network_decision():
    cfg = DetectorConfig(policy=PolicyConfig(allow_networks=frozenset({"203.0.113.0/24"})))
    decisions, _ = run(compromised_stream().sorted(), cfg)
    assert [d for d in decisions if d.scope == "network"] == []
    assert on(decisions, "victim")  # the accounts themselves are not allowlisted


def test_corporate_nat_of_old_accounts_at_human_pace_is_not_flagged():
    rng = random.Random(6)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    for i in range(40):
        t = T0 + rng.uniform(0, 120)
        while t < T0 + 2400.0:
            for k in range(rng.randint(1, 4)):  # a short session of quick requests
                s.add(
                    t + k * rng.uniform(1, 4),
                    f"staff{i}",
                    f"198.51.100.{1 + i % 2}",
                    account_created_ts=OLD + i * DAY,
                )
            t += rng.expovariate(1 / 120.0)
    decisions, _ = run(s.sorted())
    assert decisions == []


def test_old_accounts_spread_over_many_networks_are_not_a_fanout():
    s = Stream()
    s.background(T0, T0 + 1300.0, people=10)
    for i in range(15):
        s.every(f"victim{i}", f"100.{64 + i}.{i}.1", T0 + 900.0 + i, T0 + 1200.0, 1.0, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.reason == "network_fanout"] == []

