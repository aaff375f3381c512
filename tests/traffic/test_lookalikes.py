"""Honest look-alikes really show the signal they stand for, and are labelled benign with their group."""

import statistics
from collections import Counter, defaultdict

import pytest
from traffic_helpers import DEFAULT_T0, max_in_window, net24, per_account, run_actors

import traffic
from traffic.background import LOOKALIKES
from traffic.fingerprints import hamming
from traffic.lookalikes import agent_tool, long_answers, org_seats, rotating_newcomers, signup_wave
from traffic.tenants import ci_runners, paas_egress, serverless_fleet

DAY = 86400.0


def ratio(ev):
    return ev["output_tokens"] / max(1, ev["input_tokens"])


def test_org_seats_share_one_card_per_org_and_some_seats_are_new():
    events, labels = run_actors(lambda w, p: org_seats(w, p, 6))
    cards = defaultdict(set)
    for ev in events:
        cards[ev["payment_fp"]].add(ev["account_id"])
    assert len(cards) <= 6
    assert max(len(a) for a in cards.values()) >= 10
    assert {labels[a]["group"] for a in labels} == {"org_seats"}
    assert {labels[a]["label"] for a in labels} == {"benign"}
    ages = [DEFAULT_T0 - v["created"] for v in labels.values()]
    assert any(a < DAY for a in ages) and any(a > 30 * DAY for a in ages)


def test_signup_wave_is_one_cohort_that_starts_from_templates_then_diverges():
    events, labels = run_actors(lambda w, p: signup_wave(w, p, 80), duration=2 * 3600.0)
    accounts = per_account(events)
    assert len(accounts) >= 40
    created = sorted(labels[a]["created"] for a in accounts)
    assert created[-1] - created[0] <= 2 * 3600.0
    # their own networks and cards
    firsts = [evs[0] for evs in accounts.values()]
    assert len({e["payment_fp"] for e in firsts}) == len(firsts)
    assert len({net24(e["ip"]) for e in firsts}) >= 0.7 * len(firsts)
    # the first requests: a few onboarding templates, long answers; later: their own prompts
    early = [e for evs in accounts.values() for e in evs[:3]]
    late = [e for evs in accounts.values() for e in evs[12:]]
    assert statistics.median(ratio(e) for e in early) > 3.0
    centres = Counter(e["prompt_fp"] for e in early)
    near = lambda fp, pool: min(hamming(fp, c) for c in pool)  # noqa: E731
    templates = [fp for fp, _ in centres.most_common(8)]
    assert sum(near(e["prompt_fp"], templates) <= 6 for e in early) > 0.8 * len(early)
    assert late and sum(near(e["prompt_fp"], templates) <= 6 for e in late) < 0.5 * len(late)
    assert statistics.median(ratio(e) for e in late) < 2.0
    assert Counter(e["user_agent"] for e in firsts).most_common(1)[0][1] >= 0.6 * len(firsts)


def test_agent_tool_users_share_a_client_and_templates_and_loop_in_bursts():
    events, labels = run_actors(lambda w, p: agent_tool(w, p, 30))
    accounts = per_account(events)
    assert len(accounts) >= 15
    assert len({e["user_agent"] for e in events}) == 1
    assert len({e["payment_fp"] for e in events}) == len(accounts)
    fps = [e["prompt_fp"] for e in events]
    top = [fp for fp, _ in Counter(fps).most_common(4)]
    assert sum(min(hamming(fp, c) for c in top) <= 10 for fp in fps) > 0.9 * len(fps)
    bursts = [max_in_window([e["ts"] for e in evs], 10.0) for evs in accounts.values()]
    assert max(bursts) >= 5
    ages = [DEFAULT_T0 - labels[a]["created"] for a in accounts]
    assert min(ages) < 7 * DAY and max(ages) > 180 * DAY


def test_ci_runners_wake_together_at_the_top_of_the_hour_on_one_or_two_24s():
    events, labels = run_actors(lambda w, p: ci_runners(w, p, 40))
    assert len({net24(e["ip"]) for e in events}) <= 2
    accounts = per_account(events)
    assert len(accounts) >= 30
    top = (DEFAULT_T0 // 3600 + 1) * 3600  # the next top of the hour inside the window
    woke = {a for a, evs in accounts.items() if any(top <= e["ts"] < top + 300 for e in evs)}
    assert len(woke) >= 0.5 * len(accounts)
    assert all(DEFAULT_T0 - labels[a]["created"] > 30 * DAY for a in accounts)
    assert max(max_in_window([e["ts"] for e in evs], 10.0) for evs in accounts.values()) >= 10


def test_paas_apps_share_a_few_egress_addresses_and_some_accounts_are_new():
    events, labels = run_actors(lambda w, p: paas_egress(w, p, 40))
    assert len({e["ip"] for e in events}) <= 6 and len({net24(e["ip"]) for e in events}) == 1
    accounts = per_account(events)
    assert len(accounts) >= 30
    assert any(DEFAULT_T0 - labels[a]["created"] < 7 * DAY for a in accounts)


def test_a_serverless_customer_uses_hundreds_of_cloud_addresses():
    events, _ = run_actors(lambda w, p: serverless_fleet(w, p, 3))
    busy = [evs for evs in per_account(events).values() if len(evs) >= 500]
    assert busy
    for evs in busy:
        assert len({e["ip"] for e in evs}) >= 200
        assert len({net24(e["ip"]) for e in evs}) >= 10


def test_rotating_newcomers_are_young_change_address_and_some_want_long_answers():
    events, labels = run_actors(lambda w, p: rotating_newcomers(w, p, 80))
    accounts = per_account(events)
    assert all(evs[0]["ts"] - labels[a]["created"] < 3 * DAY + 1 for a, evs in accounts.items())
    multi = [evs for evs in accounts.values() if len(evs) >= 10]
    assert sum(len({e["ip"] for e in evs}) > 1 for evs in multi) >= 0.5 * len(multi)
    long = [a for a, evs in accounts.items() if statistics.median(ratio(e) for e in evs) > 3.0]
    assert 0 < len(long) < len(accounts)
    assert any("payment_fp" not in evs[0] for evs in accounts.values())  # a free trial


def test_long_answer_people_get_outputs_several_times_their_inputs():
    events, labels = run_actors(lambda w, p: long_answers(w, p, 60))
    assert statistics.median(ratio(e) for e in events) > 3.0
    assert {v["group"] for v in labels.values()} == {"long_answers"}


@pytest.mark.parametrize("name", sorted(LOOKALIKES))
def test_honest_rows_enlarge_their_group_and_label_it_benign(name):
    kw = dict(seed=5, duration_s=1800.0, scale=0.03, peak_hour=12.0)
    big = traffic.generate(f"honest_{name}", **kw).labels()["accounts"].values()
    usual = traffic.generate("benign", **kw).labels()["accounts"].values()
    count = lambda labs: sum(v["group"] == name for v in labs)  # noqa: E731
    assert count(big) >= 3 * max(1, count(usual))
    assert all(v["label"] == "benign" for v in big)
