"""Tests for detectors/rules/campaign_cluster.py, on hand-built streams through the whole detector."""

from __future__ import annotations

from tests.detectors.streams import (
    ENFORCING,
    T0,
    Stream,
    campaign_stream,
    hackathon_stream,
    on,
    run,
)


def test_young_accounts_sharing_payment_from_many_networks_are_blocked():
    decisions, _ = run(campaign_stream().sorted())
    mine = on(decisions, "young")
    blocked = {d.key for d in mine if d.reason == "campaign_cluster" and d.action == "block"}
    assert len(blocked) >= 20
    assert all(d.evidence["cluster"] == "pay" for d in mine if d.reason == "campaign_cluster")
    assert on(decisions, "person") == []


def test_campaign_joiner_is_caught_on_its_first_request():
    s = campaign_stream()
    s.add(
        T0 + 800.0,
        "latecomer",
        "172.16.9.9",
        account_created_ts=T0 - 600.0,
        payment_fp="pay_shared",
        input_tokens=40,
        output_tokens=2000,
    )
    decisions, _ = run(s.sorted())
    late = on(decisions, "latecomer")
    assert [(d.ts, d.reason, d.action) for d in late] == [(T0 + 800.0, "campaign_cluster", "block")]


def test_young_accounts_sharing_payment_but_not_harvesting_are_only_reviewed():
    s = Stream()
    for i in range(10):
        s.every(
            f"young{i}",
            f"10.{i}.0.1",
            T0 + i,
            T0 + 600.0,
            30.0,
            account_created_ts=T0 - 3600.0,
            payment_fp="pay_family",
            input_tokens=400,
            output_tokens=300,
        )
    decisions, _ = run(s.sorted())
    assert decisions
    assert {(d.reason, d.action) for d in decisions} == {("cluster_review", "review")}


def test_hackathon_on_one_address_is_not_blocked():
    decisions, _ = run(hackathon_stream().sorted())
    assert [d for d in decisions if d.action in ENFORCING] == []
    assert [d for d in decisions if d.scope == "network"] == []

