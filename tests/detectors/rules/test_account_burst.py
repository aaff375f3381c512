"""Tests for detectors/rules/account_burst.py, on hand-built streams through the whole detector."""

from __future__ import annotations

import random

from detectors.config import DetectorConfig, PolicyConfig
from tests.detectors.streams import (
    ENFORCING,
    OLD,
    T0,
    Stream,
    burst_stream,
    on,
    run,
)


def test_old_quiet_account_bursting_is_throttled_within_seconds():
    onset = T0 + 1200.0
    decisions, rejects = run(burst_stream(onset).sorted())
    assert rejects == []
    mine = on(decisions, "quiet")
    assert mine, decisions
    first = mine[0]
    # From one request a minute to 20/s is far beyond burst_block_ratio: blocked at once.
    assert first.reason in ("account_burst", "account_burst_extreme") and first.action in ENFORCING
    assert onset <= first.ts <= onset + 5.0
    assert first.expires_at == first.ts + first.ttl_s
    assert first.evidence["rate_rps"] >= 8.0 and first.evidence["ratio"] >= 8.0
    assert {d.reason for d in mine} <= {"account_burst", "account_burst_extreme"}
    assert all(d.key == "quiet" for d in decisions)


def test_burst_within_the_block_ratio_is_throttled_first():
    # An account already busy at 0.5/s jumping to 20/s: a burst, but under the burst section's block_ratio of its baseline.
    onset = T0 + 1200.0
    s = Stream()
    s.background(T0, onset + 120.0)
    s.every("steady", "198.51.100.7", T0 + 5.0, onset, 2.0, account_created_ts=OLD)
    s.every("steady", "198.51.100.7", onset, onset + 60.0, 1 / 20, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    mine = on(decisions, "steady")
    assert mine
    first = mine[0]
    assert (first.reason, first.action) == ("account_burst", "throttle")
    assert onset <= first.ts <= onset + 5.0
    burst = DetectorConfig().section("burst")
    assert burst.ratio <= first.evidence["ratio"] < burst.block_ratio
    assert first.limit_rps == PolicyConfig().rules["account_burst"].limit_rps
    assert decisions == mine


def test_steady_account_bursting_fifteen_fold_is_flagged():
    onset = T0 + 1200.0
    s = Stream()
    s.background(T0, onset + 120.0)
    s.every("steady", "198.51.100.7", T0 + 5.0, onset, 1.0, account_created_ts=OLD)
    s.every("steady", "198.51.100.7", onset, onset + 60.0, 1 / 15, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    mine = on(decisions, "steady")
    assert mine and mine[0].reason in ("account_burst", "account_burst_extreme")
    assert mine[0].ts <= onset + 10.0


def test_burst_right_after_start_up_is_not_judged_without_a_baseline():
    # The detector has watched for under the burst section's min_observed_s: an unknown baseline is not a burst.
    s = Stream()
    s.every("quiet", "198.51.100.7", T0, T0 + 30.0, 1 / 20, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    assert decisions == []


def test_enterprise_steady_from_the_start_and_its_surge_are_not_flagged():
    rng = random.Random(3)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    t = T0
    while t < T0 + 2400.0:
        rate = 15.0 if T0 + 1500.0 <= t < T0 + 1800.0 else 5.0  # x3 surge for five minutes
        s.add(t, "enterprise", "203.0.113.50", account_created_ts=OLD, input_tokens=500, output_tokens=400)
        t += rng.expovariate(rate)
    decisions, _ = run(s.sorted())
    assert on(decisions, "enterprise") == []
    assert decisions == []


def test_rate_headroom_lifts_burst_thresholds_for_one_account_or_organisation():
    from detectors.config import parse_config
    from detectors.events import Event as Ev
    from detectors.pipeline import Detector as Det

    def run(cfg_doc: dict) -> list[str]:
        det = Det(parse_config(cfg_doc))
        quiet = [Ev(event_id="q", ts=1.0, account_id="other", ip="192.0.2.1")]
        burst = [Ev(event_id=f"b{i}", ts=1000.0 + i / 20, account_id="big", ip="198.51.100.7", org_id="org_e",
                    account_created_ts=0.0) for i in range(400)]
        decisions, _ = det.process(quiet + burst)
        return [d.key for d in decisions]

    assert run({}) == ["big"]
    assert run({"burst": {"rate_headroom": {"big": 5}}}) == []
    assert run({"burst": {"rate_headroom": {"org_e": 5}}}) == []

