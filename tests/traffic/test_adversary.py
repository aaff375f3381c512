"""The adversary: campaigns honour their drawn tactics, and each variant really lacks the signal it takes away."""

import random
import statistics
from collections import defaultdict
from dataclasses import replace
from functools import cache

import pytest
from traffic_helpers import DEFAULT_T0, PEAK, net24, per_account, run_actors

import traffic
from traffic.adversary import Campaign
from traffic.benign import people
from traffic.clients import BROWSER_UAS, SDK_UAS, TOOL_UAS
from traffic.fingerprints import hamming
from traffic.tactics import AGES, Tactics, draw_tactics
from traffic.variants import glacial

DAY = 86400.0
HONEST_UAS = set(SDK_UAS + BROWSER_UAS + TOOL_UAS)


def campaign(tactics, *, duration=1800.0, seed=1, release_at=None, onset=120.0):
    """Events and labels of one campaign alone in a small world."""
    built = []

    def build(w, p):
        built.append(Campaign(w, "c", tactics, p, onset=DEFAULT_T0 + onset, group="c"))
        return built

    events, labels = run_actors(build, seed=seed, duration=duration, release_at=release_at)
    return events, labels, built[0]


def ratio(ev):
    return ev["output_tokens"] / max(1, ev["input_tokens"])


def attack_only(events, labels):
    """Events at or after their account's onset (its abusive requests)."""
    return [e for e in events if e["ts"] >= labels[e["account_id"]]["onset"]]


@pytest.mark.parametrize("seed", range(8))
def test_campaigns_honour_their_drawn_tactics(seed):
    t = draw_tactics(random.Random(seed), 1800.0, max_rps=8.0, max_accounts=2000)
    t = replace(t, model_switch=False, accounts=min(t.accounts, 300))
    events, labels, camp = campaign(t, seed=seed)
    assert all(v["label"] == "attack" and v["group"] == "c" for v in labels.values())
    if t.arrival != "replace":
        assert len(labels) <= t.accounts
    attack = attack_only(events, labels)
    accounts = per_account(attack)
    lo = min(AGES[k][0] for k in t.age) * DAY - 1.0
    hi = max(AGES[k][1] for k in t.age) * DAY + 1.0
    for a, evs in accounts.items():
        lab = labels[a]
        assert evs[0]["ts"] == lab["onset"]  # the onset is the account's own first abusive request
        assert lo <= lab["onset"] - lab["created"] <= hi
        assert evs[0]["user_agent"] in HONEST_UAS
        if len(evs) >= 3:
            r = statistics.median(ratio(e) for e in evs)
            assert t.ratio / 1.6 <= r <= t.ratio * 1.6
        if len(evs) >= 6:
            gaps = [b["ts"] - a_["ts"] for a_, b in zip(evs, evs[1:], strict=False)]
            assert t.gap_s * 0.25 <= statistics.median(gaps) <= t.gap_s * 4.0
        if t.rotation == "sticky":
            assert len({e["ip"] for e in evs}) == 1
    before = [e for e in events if e["ts"] < labels[e["account_id"]]["onset"]]
    if t.age == ("fresh",):
        assert not before
    places = {net24(e["ip"]) if t.exit_kind == "ipv6" else e["ip"] for e in attack}
    assert len(places) <= t.exits
    cards = defaultdict(set)
    for acct in camp.accounts:
        cards[acct.payment_fp].add(acct.id)
    if t.accounts_per_card == 0:
        assert not any("payment_fp" in e for e in events)
    elif t.accounts_per_card == 1:
        assert all(len(v) == 1 for v in cards.values())
    elif len(labels) >= 3 * t.accounts_per_card:
        assert len(labels) / t.accounts_per_card / 3 <= len(cards) <= 3 * len(labels) / t.accounts_per_card


def test_drawn_tactics_cover_the_whole_range():
    ts = [draw_tactics(random.Random(i), 3600.0) for i in range(300)]
    assert min(t.ratio for t in ts) < 0.7 and max(t.ratio for t in ts) > 6.0
    assert min(t.gap_s for t in ts) < 2.0 and max(t.gap_s for t in ts) > 20000.0
    assert min(t.exits for t in ts) <= 2 and max(t.exits for t in ts) >= 2000
    assert min(t.accounts for t in ts) < 20 and max(t.accounts for t in ts) >= 1000
    cards = [t.accounts_per_card for t in ts]
    assert 0 in cards and 1 <= min(c for c in cards if c) < 2 and max(cards) > 300
    assert {a for t in ts for a in t.age} == set(AGES)
    assert {t.arrival for t in ts} == {"onset", "ramp", "trickle", "replace"}
    assert {t.fingerprints for t in ts} == {True, False}


def test_tactics_refuse_values_outside_the_adversarys_range():
    with pytest.raises(ValueError, match="accounts_per_card"):
        Tactics(accounts_per_card=5000.0)
    with pytest.raises(ValueError, match="exit_kind"):
        Tactics(exit_kind="satellite")
    with pytest.raises(ValueError, match="age"):
        Tactics(age=("ancient",))


# variants, at a small scale, one seed; every variant of the family shares the base's draws


def make(name, seed=7):
    k = 0.5 if name == "stolen_modest" else 0.2  # a few more of the few stolen keys
    return traffic.generate(name, seed=seed, duration_s=1800.0, scale=0.02, attack_scale=k, peak_hour=PEAK)


@cache
def run(name, seed=7):
    sim = make(name, seed)
    labels = sim.labels()["accounts"]
    events = list(sim.events())
    attack = [e for e in events if labels[e["account_id"]]["group"] == name]
    return events, labels, attack


def cards_of(attack):
    cards = defaultdict(set)
    for e in attack:
        cards[e.get("payment_fp")].add(e["account_id"])
    return cards


def near_share(fps, bits=6):
    """The share of prompts within `bits` of another, different-or-repeated prompt of the list."""
    seen = list(fps)
    near = 0
    for i, fp in enumerate(seen[:300]):
        if any(hamming(fp, other) <= bits for j, other in enumerate(seen[:300]) if j != i):
            near += 1
    return near / min(300, len(seen))


def test_the_base_campaign_shows_every_signal():
    _, labels, attack = run("campaign")
    accounts = per_account(attack)
    assert len(accounts) >= 20
    assert all(evs[0]["ts"] - evs[0]["account_created_ts"] < 2 * DAY + 1 for evs in accounts.values())
    assert statistics.median(ratio(e) for e in attack) > 2.5
    assert max(len(a) for a in cards_of(attack).values()) >= 3
    busy = [evs for evs in accounts.values() if len(evs) >= 10]
    assert all(len({e["ip"] for e in evs}) > 0.7 * len(evs) for evs in busy)
    assert near_share([e["prompt_fp"] for e in attack]) > 0.8


def strip(events, *fields):
    return [{k: v for k, v in e.items() if k not in fields and k != "event_id"} for e in events]


def test_own_cards_differs_from_the_base_by_its_cards_alone():
    base, variant = run("campaign")[2], run("campaign_own_cards")[2]
    assert strip(base, "payment_fp") == strip(variant, "payment_fp")
    assert all(len(a) == 1 for a in cards_of(variant).values())


def test_no_fingerprints_sends_none_and_is_otherwise_the_base():
    events, _, attack = run("campaign_no_fp")
    assert not any("prompt_fp" in e or "payment_fp" in e for e in events)
    assert strip(run("campaign")[2], "payment_fp", "prompt_fp") == strip(attack, "payment_fp", "prompt_fp")


def test_own_exits_gives_every_account_one_exit_of_its_own():
    accounts = per_account(run("campaign_own_exits")[2])
    ips = [{e["ip"] for e in evs} for evs in accounts.values()]
    assert all(len(s) == 1 for s in ips)
    assert len(set().union(*ips)) == len(ips)


def test_dataset_prompts_share_no_simhash_band():
    attack = run("campaign_dataset")[2]
    assert near_share([e["prompt_fp"] for e in attack]) < 0.02


def test_aged_accounts_are_weeks_to_years_old_with_earlier_ordinary_use():
    _, labels, attack = run("campaign_aged")
    accounts = per_account(attack)
    onsets = {a: labels[a]["onset"] for a in accounts}
    assert all(onsets[a] - labels[a]["created"] >= 7 * DAY for a in accounts)
    history = [e for e in attack if e["ts"] < onsets[e["account_id"]]]
    assert history and all(e["ts"] < onsets[e["account_id"]] for e in history)
    assert {labels[e["account_id"]]["onset"] for e in history} <= set(onsets.values())


def test_low_ratio_harvests_with_long_contexts():
    attack = run("campaign_low_ratio")[2]
    assert statistics.median(ratio(e) for e in attack) <= 1.6
    assert statistics.median(e["input_tokens"] for e in attack) > 1000


def test_slow_pace_is_minutes_apart_per_account():
    accounts = per_account(run("campaign_slow")[2])
    gaps = [b["ts"] - a["ts"] for evs in accounts.values() for a, b in zip(evs, evs[1:], strict=False)]
    assert gaps and statistics.median(gaps) >= 200.0


def test_modest_burst_is_stolen_quiet_keys_at_3_to_6_rps_from_a_new_network():
    _, labels, events = run("stolen_modest")
    accounts = per_account(events)
    assert len(accounts) >= 3
    abuse_nets = set()
    assert any(e["ts"] < labels[e["account_id"]]["onset"] for e in events)  # some owners still use their keys
    for a, evs in accounts.items():
        onset = labels[a]["onset"]
        assert onset - labels[a]["created"] >= 90 * DAY
        work = [e for e in evs if e["ts"] >= onset]
        owner = {net24(e["ip"]) for e in evs if e["ts"] < onset}
        abuse = {net24(e["ip"]) for e in work}
        assert not owner & abuse  # the thief comes from a network the owner never used
        abuse_nets |= abuse
        if len(work) >= 50:
            rps = (len(work) - 1) / (work[-1]["ts"] - work[0]["ts"])
            assert 3.0 <= rps <= 6.0
    assert len(abuse_nets) <= 2


@pytest.mark.parametrize("shared_cards", [True, False])
def test_glacial_campaigns_join_all_along_at_an_hour_a_request_and_switch_model_together(shared_cards):
    t = glacial(random.Random(3), 6 * 3600.0, 0.25, shared_cards=shared_cards)
    built = []

    def build(w, p):
        built.append(Campaign(w, "g", t, p, onset=DEFAULT_T0 + 600.0, group="glacial"))
        return built + people(w, 60)

    events, labels = run_actors(build, duration=6 * 3600.0, release_at=2 * 3600.0)
    camp = built[0]
    attack = [e for e in events if labels[e["account_id"]]["label"] == "attack"]
    accounts = per_account(attack)
    assert len(accounts) >= 400
    starts = sorted(evs[0]["ts"] - DEFAULT_T0 for evs in accounts.values())
    assert starts[len(starts) // 4] < 2 * 3600 and starts[3 * len(starts) // 4] > 4 * 3600
    gaps = [b["ts"] - a["ts"] for evs in accounts.values() for a, b in zip(evs, evs[1:], strict=False)]
    assert 2400.0 <= statistics.median(gaps) <= 5400.0
    assert all(len({e["ip"] for e in evs}) == len(evs) for evs in accounts.values() if len(evs) <= 5)
    # one moment for the whole campaign: before it the old model, after it the new one
    assert all((e["model"] == "large-2") == (e["ts"] >= camp.switch_at) for e in attack)
    honest = [e for e in events if labels[e["account_id"]]["label"] == "benign"]
    release = DEFAULT_T0 + 2 * 3600.0
    assert not any(e["model"] == "large-2" for e in honest if e["ts"] < release)
    after = [e for e in honest if e["ts"] >= release]
    assert 0 < sum(e["model"] == "large-2" for e in after) < 0.5 * len(after)
    cards = cards_of(attack)
    if shared_cards:
        assert 0.5 * len(camp.accounts) / t.accounts_per_card <= len(cards) <= 600
    else:
        assert all(len(a) == 1 for a in cards.values())


def test_a_random_adversary_is_another_campaign_per_seed_and_the_same_per_seed():
    a, b = run("adversary", 7)[2], run("adversary", 8)[2]
    assert a != b
    assert strip(list(make("adversary", 7).events()), "x") == strip(run("adversary", 7)[0], "x")
    ta = next(x.tactics for x in make("adversary", 7).actors if isinstance(x, Campaign))
    tb = next(x.tactics for x in make("adversary", 8).actors if isinstance(x, Campaign))
    assert ta != tb
