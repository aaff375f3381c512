"""Tests for detectors/rules/payment_campaign.py: a campaign's card blocked as a whole (so its next account
is stopped before its first request), an organisation's shared card never."""

from __future__ import annotations

import random

from backtest.score import score
from tests.detectors.rules.test_campaign import TEMPLATES, _near, campaign
from tests.detectors.streams import DAY, T0, Stream, run


def test_a_campaigns_card_is_blocked_and_stops_a_new_account_on_it_at_its_first_request():
    rng = random.Random(11)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    campaign(s, rng, accounts=30, cards=3, end=T0 + 2400.0)
    # A fresh account opened on one of those cards joins late: its very first request must not pass.
    s.add(T0 + 2000.0, "latecomer", "10.99.99.9", account_created_ts=T0 + 1990.0, payment_fp="card0",
          prompt_fp=_near(TEMPLATES[0], rng), user_agent="sdk/1.0", input_tokens=60, output_tokens=900)
    events = s.sorted()
    decisions, _ = run(events)
    cards = [d for d in decisions if d.reason == "payment_campaign"]
    assert {d.key for d in cards} >= {"card0"} and all(d.scope == "payment" and d.action == "block" for d in cards)
    assert cards[0].evidence["card_campaign_accounts"] >= 3
    labels = {"accounts": {e.account_id: {"label": "attack" if e.account_id == "latecomer" else "benign",
                                          "group": "late", "onset": T0 + 1999.0, "created": 0.0} for e in events}}
    report = score([{"account_id": e.account_id, "ts": e.ts, "ip": e.ip, "payment_fp": e.payment_fp}
                    for e in events], labels, decisions)
    assert report["groups"]["attack:late"]["leakage"] == 0.0  # its first request stopped: by the card


def test_an_organisations_card_is_never_blocked():
    # Forty seats on one card with ordinary use; three accounts on it that harvest as a campaign (found by
    # their prompts and exits) are blocked, but they are not most of the card: the card is not.
    rng = random.Random(12)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    for i in range(40):
        t = T0 + rng.uniform(0, 600)
        created = T0 - rng.uniform(1, 400) * DAY
        while t < T0 + 2400.0:
            s.add(t, f"seat{i}", f"198.51.100.{1 + i % 2}", account_created_ts=created, payment_fp="org_card0",
                  prompt_fp=f"{rng.getrandbits(64):016x}", user_agent="browser/1", input_tokens=400,
                  output_tokens=450)
            t += rng.expovariate(1 / 120.0)
    campaign(s, rng, accounts=30, cards=10, prefix="member")  # a campaign on its own cards, sharing templates
    campaign(s, rng, accounts=3, cards=1, prefix="intruder", card="org_card")
    decisions, _ = run(s.sorted())
    assert "org_card0" not in {d.key for d in decisions if d.scope == "payment"}
    assert {d.key for d in decisions if d.key.startswith("intruder") and d.action == "block"}
    assert [d for d in decisions if d.key.startswith("seat") and d.action != "review"] == []
