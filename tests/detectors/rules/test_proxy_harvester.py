"""Tests for detectors/rules/proxy_harvester.py, on hand-built streams through the whole detector."""

from __future__ import annotations

from tests.detectors.streams import T0, Stream, on, run


def _rotating(s: Stream, account: str, created: float, out_tokens: int, exits: int = 6) -> None:
    for i in range(exits):
        s.add(T0 + 10.0 * i, account, f"203.0.{i}.9", account_created_ts=created, input_tokens=40,
              output_tokens=out_tokens)


def test_fresh_account_harvesting_through_rotating_exits_is_reviewed_never_blocked():
    s = Stream()
    _rotating(s, "fresh", T0 - 3600.0, 900)
    decisions, _ = run(s.sorted())
    assert [(d.key, d.reason, d.action) for d in on(decisions, "fresh")] == [("fresh", "proxy_harvester", "review")]
    ev = decisions[0].evidence
    assert ev["harvest_ratio"] >= 2.5 and ev["networks"] >= 3 and ev["switch_share"] >= 0.6


def test_the_same_pattern_is_left_alone_without_each_of_its_parts():
    old = Stream()
    _rotating(old, "aged", T0 - 5 * 86400.0, 900)  # older than max_age_s
    short = Stream()
    _rotating(short, "short", T0 - 3600.0, 60)  # ordinary answers
    home = Stream()
    for i in range(6):  # one network
        home.add(T0 + 10.0 * i, "home", "198.51.100.9", account_created_ts=T0 - 3600.0, input_tokens=40,
                 output_tokens=900)
    for s in (old, short, home):
        assert [d for d in run(s.sorted())[0] if d.reason == "proxy_harvester"] == []
