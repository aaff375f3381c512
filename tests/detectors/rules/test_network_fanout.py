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
    stolen,
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
        stolen(s, rng, f"victim{i}", onset + rng.uniform(0, 30), onset + 300.0, created)
    decisions, _ = run(s.sorted())
    fanout = {d.key for d in on(decisions, "victim") if d.reason == "network_fanout"}
    assert len(fanout) >= 12
    assert on(decisions, "person") == []


def test_ci_runners_of_many_customers_waking_together_are_not_a_fanout():
    # The top of the hour on a hosted CI service's /24: dozens of old customers' jobs at a few requests a
    # second each, on their own leased runners, with their own clients. Waking together is not acting alike.
    rng = random.Random(9)
    s = Stream()
    s.background(T0, T0 + 2400.0, people=10)
    for i in range(40):
        runner = f"203.0.113.{rng.randrange(1, 254)}"
        start = T0 + 1800.0 + rng.uniform(5, 90)
        t = start
        for _ in range(rng.randint(20, 150)):
            s.add(t, f"ci{i}", runner, account_created_ts=OLD + i * DAY, user_agent=f"sdk/{i % 7}",
                  input_tokens=300, output_tokens=200)
            t += rng.uniform(0.3, 1.7) / rng.uniform(1.0, 6.0)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.action in ("block", "throttle")] == []


def test_a_network_with_its_ordinary_customers_active_is_not_blocked_as_a_whole():
    # A heavy customer on the cloud /24 the thief rents servers in: its keys are blocked, the network not.
    rng = random.Random(10)
    s = compromised_stream()
    s.every("heavy", "203.0.113.200", T0 + 1.0, T0 + 1300.0, 0.25, account_created_ts=OLD, user_agent="sdk/1",
            jitter=0.1, rng=rng)
    decisions, _ = run(s.sorted())
    assert len({d.key for d in on(decisions, "victim") if d.reason == "network_fanout"}) >= 12
    assert [d for d in decisions if d.scope == "network"] == []
    assert on(decisions, "heavy") == []


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


def test_ci_runners_waking_every_hour_on_the_network_they_use_are_not_a_fanout():
    # Hourly cron jobs of many customers of one CI service, watched since their run at the top of the
    # first hour: every later burst comes from a network the account has used before, however far above
    # its average rate. Their runners share a handful of addresses and most use the same SDK, so only
    # their history tells them from thieves (in the glacial runs of make eval, 2 such accounts an hour).
    rng = random.Random(12)
    s = Stream()
    s.background(T0, T0 + 4 * 3600.0, people=10)
    runners = [f"203.0.113.{rng.randrange(1, 254)}" for _ in range(6)]
    for i in range(40):
        for hour in range(4):
            t = T0 + hour * 3600.0 + rng.uniform(5, 60)
            for _ in range(rng.randint(30, 150)):
                s.add(t, f"ci{i}", rng.choice(runners), account_created_ts=OLD + i * DAY,
                      user_agent="sdk/1" if i % 5 else "sdk/2", input_tokens=300, output_tokens=200)
                t += rng.uniform(0.3, 1.7) / rng.uniform(3.0, 6.0)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.action in ("block", "throttle")] == []
