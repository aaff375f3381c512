"""Tests for detectors/rules/campaign.py: a campaign found by what its accounts share, each honest
look-alike of one of its traits left alone, and blocks that outlast the campaign's pace."""

from __future__ import annotations

import random

from detectors.config import DetectorConfig
from tests.detectors.streams import DAY, OLD, T0, Stream, on, run

TEMPLATES = ["0123456789abcdef", "fedcba9876543210", "0f1e2d3c4b5a6978"]


def _near(fp: str, rng: random.Random, flips: int = 2) -> str:
    """A prompt fingerprint a few bits from ``fp``: the same template with other words filled in."""
    x = int(fp, 16)
    for _ in range(flips):
        x ^= 1 << rng.randrange(64)
    return f"{x:016x}"


def campaign(s: Stream, rng: random.Random, *, accounts: int = 30, start: float = T0 + 300.0, gap: float = 20.0,
             end: float = T0 + 1500.0, created: float | None = None, cards: int = 5, exits: bool = True,
             prefix: str = "member", card: str = "card") -> None:
    """Accounts acting together: shared cards, a new exit per request, the same templates, long answers,
    one client, a regular pace."""
    for i in range(accounts):
        t = start + rng.uniform(0, 60)
        k = 0
        while t < end:
            s.add(t, f"{prefix}{i}", f"10.{rng.randrange(250)}.{rng.randrange(250)}.9" if exits else f"10.77.{i}.9",
                  account_created_ts=created if created is not None else t - rng.uniform(600, 7200),
                  payment_fp=f"{card}{i % cards}", prompt_fp=_near(rng.choice(TEMPLATES), rng), user_agent="sdk/1.0",
                  input_tokens=60, output_tokens=900)
            t += gap * rng.uniform(0.9, 1.1)
            k += 1


def test_a_campaign_is_blocked_with_its_score_and_parts_in_the_evidence():
    rng = random.Random(1)
    s = Stream()
    s.background(T0, T0 + 1500.0)
    campaign(s, rng)
    decisions, _ = run(s.sorted())
    blocked = {d.key for d in on(decisions, "member") if d.reason == "campaign" and d.action == "block"}
    assert len(blocked) >= 27
    d = next(d for d in decisions if d.reason == "campaign")
    ev = d.evidence
    assert ev["campaign_score"] >= DetectorConfig().section("campaign").block_score
    assert {k for k in ev if k.startswith("part_")} == {f"part_{p}" for p in
                                                        ("cards", "exits", "prompts", "identity", "harvest", "automation")}
    assert ev["part_cards"] + ev["part_exits"] >= 0.5 and ev["member_fit"] >= 0.7
    assert "hold_basis" in ev
    assert on(decisions, "person") == []


def test_aged_accounts_on_their_own_cards_are_still_a_campaign():
    # Two signals taken away at once (age, shared cards): exits, prompts, harvest and pace remain.
    rng = random.Random(2)
    s = Stream()
    s.background(T0, T0 + 1500.0)
    campaign(s, rng, created=OLD, cards=1000)
    decisions, _ = run(s.sorted())
    assert len({d.key for d in on(decisions, "member") if d.reason == "campaign"}) >= 20


def test_a_slow_campaign_stays_blocked_between_its_requests():
    # One request every 20 minutes: a 1 h block would lapse between them; the hold is a few of the
    # members' gaps, renewed as they come back.
    rng = random.Random(3)
    s = Stream()
    s.background(T0, T0 + 4 * 3600.0)
    campaign(s, rng, accounts=40, gap=1200.0, end=T0 + 4 * 3600.0)
    decisions, _ = run(s.sorted())
    mine = [d for d in on(decisions, "member") if d.reason == "campaign"]
    assert mine and all(d.ttl_s >= 3 * 1200.0 * 0.8 for d in mine[-10:])
    first = {}
    for d in mine:
        first.setdefault(d.key, d)
    # Every later request of a decided member falls inside a block: none lapses between requests.
    for e in s.sorted():
        d = first.get(e.account_id)
        if d is not None and e.ts > d.ts + 1:
            blocks = [x for x in mine if x.key == e.account_id and x.ts + 1 <= e.ts]
            assert any(e.ts < x.expires_at for x in blocks), (e.account_id, e.ts)


def test_a_launch_day_wave_is_not_a_campaign():
    # New accounts of one app, signed up together, onboarding templates, long answers: but each on its
    # own home network and card, at human pace, then its own prompts.
    rng = random.Random(4)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    for i in range(80):
        t = T0 + rng.uniform(0, 1800)
        home = f"100.{64 + i}.{i}.{rng.randrange(1, 250)}"
        for k in range(rng.randint(4, 15)):
            s.add(t, f"newbie{i}", home, account_created_ts=t - rng.uniform(30, 600), payment_fp=f"own{i}",
                  prompt_fp=_near(TEMPLATES[k % 2], rng) if k < 2 else f"{rng.getrandbits(64):016x}",
                  user_agent="app/2.0", input_tokens=80, output_tokens=700)
            t += rng.lognormvariate(3.5, 0.6)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.action in ("block", "throttle")] == []


def test_an_organisations_seats_on_one_card_are_not_a_campaign():
    rng = random.Random(5)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    for i in range(40):
        t = T0 + rng.uniform(0, 600)
        created = T0 - (rng.uniform(0.1, 0.5) if i < 8 else rng.uniform(30, 400)) * DAY  # some seats added today
        while t < T0 + 2400.0:
            s.add(t, f"seat{i}", f"198.51.100.{1 + i % 2}", account_created_ts=created, payment_fp="org_card",
                  prompt_fp=_near(TEMPLATES[i % 3], rng, flips=6) if rng.random() < 0.3 else
                  f"{rng.getrandbits(64):016x}", user_agent=f"browser/{i % 4}",
                  input_tokens=400, output_tokens=450)
            t += rng.expovariate(1 / 90.0)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.action in ("block", "throttle")] == []


def test_an_agent_tools_users_with_template_prompts_are_not_a_campaign():
    rng = random.Random(6)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    for i in range(40):
        t = T0 + rng.uniform(0, 1200)
        home = f"100.{80 + i}.{i}.7"
        created = T0 - rng.uniform(0.2, 600) * DAY
        while t < T0 + 2400.0:
            for _ in range(rng.randint(3, 12)):  # an agent loop: a request or a few a second
                s.add(t, f"agent{i}", home, account_created_ts=created, payment_fp=f"own{i}",
                      prompt_fp=_near(TEMPLATES[0], rng, flips=3), user_agent="agent-cli/0.9",
                      input_tokens=6000, output_tokens=700)
                t += rng.uniform(0.5, 3.0)
            t += rng.expovariate(1 / 300.0)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.action in ("block", "throttle")] == []


def test_an_honest_account_sharing_only_a_template_with_a_campaign_is_left_alone():
    rng = random.Random(7)
    s = Stream()
    s.background(T0, T0 + 1500.0)
    campaign(s, rng)
    for i in range(10):  # old accounts at home who happen to send the campaign's template once
        s.add(T0 + 900.0 + i, f"bystander{i}", f"100.{90 + i}.1.1", account_created_ts=OLD,
              prompt_fp=_near(TEMPLATES[0], rng), user_agent="browser/1", input_tokens=60, output_tokens=900,
              payment_fp=f"mine{i}")
    decisions, _ = run(s.sorted())
    assert on(decisions, "member")
    assert [d for d in on(decisions, "bystander") if d.action != "review"] == []  # at most a person looks
