"""Tests for detectors/accounts.py: per-account online state and the bounded account table."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.accounts import H_10, H_LONG, H_MID, H_SHORT, H_TOKENS, AccountState, AccountTracker
from detectors.config import AccountConfig
from detectors.rates import LN2

DAY = 86400.0


def steady(
    s: AccountState,
    start: float,
    rps: float,
    seconds: float,
    net: int = 1,
    out_tok: int = 0,
    in_tok: int = 0,
    learn: bool = True,
) -> float:
    n = int(seconds * rps)
    t = start
    for i in range(n):
        t = start + i / rps
        s.update(t, net=net, out_tok=out_tok, in_tok=in_tok, learn=learn)
    return t


# --- AccountState ---------------------------------------------------------------------------------


def test_new_state_is_empty():
    s = AccountState(first_ts=10.0, created=None)
    assert s.n == 0 and s.last_ts == 10.0
    assert math.isnan(s.created)
    assert s.age(100.0) == math.inf
    assert s.rate_short() == s.rate_10() == s.rate_mid() == 0.0
    assert s.harvest_ratio() == 0.0 and s.switch_share() == 0.0 and s.distinct_networks() == 0


def test_age_uses_created():
    s = AccountState(first_ts=0.0, created=-5 * DAY)
    assert s.age(DAY) == pytest.approx(6 * DAY)


@pytest.mark.parametrize("rps", [0.5, 2.0, 10.0])
def test_rates_converge_to_the_steady_rate(rps):
    s = AccountState(first_ts=0.0, created=None)
    steady(s, 0.0, rps, 600.0)
    # Read right after an event, a decayed estimate sits at the top of its sawtooth.
    k = LN2 / H_SHORT / rps
    assert s.rate_short() == pytest.approx(rps * k / (1 - math.exp(-k)), rel=0.01)
    assert s.rate_10() == pytest.approx(rps, rel=0.1)
    assert s.rate_mid() == pytest.approx(rps, rel=0.1)
    assert s.n == int(600 * rps)


def test_counts_decay_with_their_half_lives():
    s = AccountState(first_ts=0.0, created=None)
    s.update(0.0, net=1, out_tok=0, in_tok=0, learn=True)
    c_short, c_10, c_mid, c_long = s.c_short, s.c_10, s.c_mid, s.c_long
    assert (c_short, c_10, c_mid, c_long) == (1.0, 1.0, 1.0, 1.0)
    s.update(60.0, net=1, out_tok=0, in_tok=0, learn=True)
    assert s.c_short == pytest.approx(0.5 ** (60 / H_SHORT) + 1)
    assert s.c_10 == pytest.approx(0.5 ** (60 / H_10) + 1)
    assert s.c_mid == pytest.approx(0.5 ** (60 / H_MID) + 1)
    assert s.c_long == pytest.approx(0.5 ** (60 / H_LONG) + 1)


def test_late_event_adds_what_it_would_weigh_now_and_keeps_last_ts():
    s = AccountState(first_ts=0.0, created=None)
    steady(s, 0.0, 1.0, 30.0)
    snap = (s.c_short, s.c_10, s.c_mid, s.c_long, s.out_tok, s.in_tok, s.last_ts, s.ia_mean, s.ia_var)
    s.update(5.0, net=1, out_tok=7, in_tok=3, learn=True)  # 24 s late
    assert s.c_short == pytest.approx(snap[0] + 0.5 ** (24 / H_SHORT))
    assert s.c_10 == pytest.approx(snap[1] + 0.5 ** (24 / H_10))
    assert s.c_mid == pytest.approx(snap[2] + 0.5 ** (24 / H_MID))
    assert s.c_long == pytest.approx(snap[3] + 0.5 ** (24 / H_LONG))
    assert s.out_tok == pytest.approx(snap[4] + 7 * 0.5 ** (24 / H_TOKENS))
    assert s.in_tok == pytest.approx(snap[5] + 3 * 0.5 ** (24 / H_TOKENS))
    assert s.last_ts == snap[6]
    assert (s.ia_mean, s.ia_var) == (snap[7], snap[8])  # timing is learnt from in-order events only


def test_a_late_minute_read_after_the_next_one_does_not_fake_a_burst():
    # Two input partitions read out of step: a minute of an account's requests (1/s) arrives after
    # the next minute's. Adding each late request whole put ~60 requests into the 2 s count (a
    # 20/s "burst" from a 1/s account); weighted by its age, the count is what in-order arrival gives.
    in_order, out_of_step = AccountState(0.0, None), AccountState(60.0, None)
    for t in range(120):
        in_order.update(float(t), net=1, out_tok=0, in_tok=0, learn=True)
    for t in list(range(60, 120)) + list(range(60)):
        out_of_step.update(float(t), net=1, out_tok=0, in_tok=0, learn=True)
    assert out_of_step.rate_short() == pytest.approx(in_order.rate_short())
    assert out_of_step.rate_10() == pytest.approx(in_order.rate_10())
    assert out_of_step.rate_short() < 1.5  # a 1/s account, read just after a request


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 3600.0), st.integers(0, 5000), st.integers(0, 5000)),
                min_size=1, max_size=60),
       st.randoms(use_true_random=False))
def test_decayed_counts_do_not_depend_on_arrival_order(requests, rnd):
    shuffled = list(requests)
    rnd.shuffle(shuffled)
    states = []
    for order in (sorted(requests), shuffled):
        s = AccountState(first_ts=order[0][0], created=None)
        for ts, out_tok, in_tok in order:
            s.update(ts, net=1, out_tok=out_tok, in_tok=in_tok, learn=True)
        states.append(s)
    a, b = states
    for name in ("c_short", "c_10", "c_mid", "c_long", "out_tok", "in_tok", "last_ts"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9, abs=1e-9), name


def test_same_instant_events_count_without_decay():
    s = AccountState(first_ts=5.0, created=None)
    for _ in range(4):
        s.update(5.0, net=1, out_tok=0, in_tok=0, learn=True)
    assert s.c_short == 4.0 and s.rate_short() == pytest.approx(4 * LN2 / H_SHORT)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=-1e6, max_value=1e6),
            st.integers(0, 10**6),
            st.integers(0, 10**6),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_state_stays_finite_and_bounded_for_any_order(updates):
    s = AccountState(first_ts=0.0, created=None)
    for ts, out_tok, in_tok, learn in updates:
        s.update(ts, net=int(out_tok) % 7, out_tok=out_tok, in_tok=in_tok, learn=learn)
    for v in (s.c_short, s.c_10, s.c_mid, s.c_long, s.peak_mid, s.out_tok, s.in_tok, s.ia_mean, s.ia_var):
        assert math.isfinite(v)
    for c in (s.c_short, s.c_10, s.c_mid, s.c_long):
        assert 0.0 <= c <= len(updates)
    assert s.n == len(updates)
    assert s.last_ts == max(0.0, max(u[0] for u in updates))
    assert 0.0 <= s.switch_share() <= 1.0
    assert s.timing_cv() >= 0.0


def test_learn_false_freezes_the_baseline():
    s = AccountState(first_ts=0.0, created=None)
    t = steady(s, 0.0, 1.0, 600.0)
    c_long, peak = s.c_long, s.peak_mid
    steady(s, t + 1.0, 20.0, 30.0, learn=False)
    assert s.c_long == c_long and s.peak_mid == peak
    assert s.rate_short() > 15.0


def test_burst_from_a_quiet_account_stands_out_against_its_baseline():
    s = AccountState(first_ts=0.0, created=None)
    t = steady(s, 0.0, 0.2, 1800.0)
    base = s.baseline(1800.0)
    steady(s, t + 1.0, 20.0, 3.0)
    assert s.rate_short() / max(s.baseline(1803.0), 0.1) > 8.0
    assert base == pytest.approx(0.2, rel=0.3)


def test_burst_does_not_raise_its_own_baseline_within_seconds():
    s = AccountState(first_ts=0.0, created=None)
    t = steady(s, 0.0, 1.0, 1800.0)
    before = s.baseline(1800.0)
    steady(s, t + 1.0, 15.0, 5.0)
    assert s.baseline(1806.0) <= 1.2 * before


def test_long_rate_bias_correction():
    s = AccountState(first_ts=0.0, created=None)
    steady(s, 0.0, 1.0, 300.0)
    assert s.long_rate(300.0) == pytest.approx(1.0, rel=0.1)
    assert s.long_rate(0.0) == pytest.approx(s.c_long * LN2 / H_LONG)
    assert s.long_rate(0.0) < 0.2


def test_baseline_is_the_higher_of_long_rate_and_peak():
    s = AccountState(first_ts=0.0, created=None)
    steady(s, 0.0, 2.0, 300.0)
    assert s.baseline(300.0) == max(s.long_rate(300.0), s.peak_mid)
    assert s.peak_mid == pytest.approx(2.0 * (1 - 0.5 ** (300 / H_MID)), rel=0.1)


def test_harvest_ratio():
    s = AccountState(first_ts=0.0, created=None)
    s.update(0.0, net=1, out_tok=2000, in_tok=50, learn=True)
    assert s.harvest_ratio() == pytest.approx(2000 / 100)
    s2 = AccountState(first_ts=0.0, created=None)
    for i in range(10):
        s2.update(float(i), net=1, out_tok=100, in_tok=400, learn=True)
    assert s2.harvest_ratio() < 0.3
    # Tokens decay together, so the ratio of a steady account is steady.
    r = s2.harvest_ratio()
    s2.update(3600.0, net=1, out_tok=100, in_tok=400, learn=True)
    assert s2.harvest_ratio() == pytest.approx(r, rel=0.5)


def test_distinct_networks_and_switch_share():
    s = AccountState(first_ts=0.0, created=None)
    for i, net in enumerate([1, 1, 2, 3, 3, 4]):
        s.update(float(i), net=net, out_tok=0, in_tok=0, learn=True)
    assert s.distinct_networks() == 4
    assert s.switches == 3
    assert s.switch_share() == pytest.approx(3 / 5)


def test_distinct_networks_saturates_at_64():
    s = AccountState(first_ts=0.0, created=None)
    for i in range(500):
        s.update(float(i), net=i * 2654435761 % 2**32, out_tok=0, in_tok=0, learn=True)
    assert s.distinct_networks() <= 64
    assert s.switch_share() == 1.0


def test_timing_cv_regular_script_below_irregular_person():
    import random

    script = AccountState(first_ts=0.0, created=None)
    steady(script, 0.0, 1.0, 200.0)
    person = AccountState(first_ts=0.0, created=None)
    rng = random.Random(5)
    t = 0.0
    for _ in range(200):
        t += rng.expovariate(1.0) * rng.choice([0.1, 1.0, 10.0])
        person.update(t, net=1, out_tok=0, in_tok=0, learn=True)
    assert script.timing_cv() < 0.05
    assert person.timing_cv() > 0.5


# --- AccountTracker -------------------------------------------------------------------------------


def tracker(**kw) -> AccountTracker:
    return AccountTracker(AccountConfig(**{"max_accounts": 1000, **kw}))


def test_get_or_create_returns_the_same_state():
    t = tracker()
    a = t.get_or_create("a", ts=1.0, created=None)
    a.update(1.0, net=1, out_tok=0, in_tok=0, learn=True)
    assert t.get_or_create("a", ts=2.0, created=None) is a
    assert len(t) == 1


def test_created_learnt_later_is_kept_once_known():
    t = tracker()
    s = t.get_or_create("a", ts=1.0, created=None)
    assert math.isnan(s.created)
    t.get_or_create("a", ts=2.0, created=-DAY)
    assert s.created == -DAY
    t.get_or_create("a", ts=3.0, created=5.0)  # a known creation time is not overwritten
    assert s.created == -DAY


def test_idle_accounts_expire():
    t = tracker(idle_expiry_s=60.0)
    t.get_or_create("old", ts=0.0, created=None)
    fresh = t.get_or_create("fresh", ts=90.0, created=None)
    fresh.update(90.0, net=1, out_tok=0, in_tok=0, learn=True)
    assert t.expire(now=100.0) == 1
    assert "old" not in t.states and "fresh" in t.states
    assert t.expired == 1


def test_flagged_accounts_do_not_expire_while_enforced():
    t = tracker(idle_expiry_s=60.0)
    s = t.get_or_create("bad", ts=0.0, created=None)
    s.flagged_until = 500.0
    assert t.expire(now=100.0) == 0
    assert t.expire(now=600.0) == 1


def test_expire_records_removed_keys_when_tracking_dirty():
    t = tracker(idle_expiry_s=10.0)
    t.track_dirty = True
    t.get_or_create("a", ts=0.0, created=None)
    t.get_or_create("b", ts=0.0, created=None)
    assert t.dirty == {"a", "b"}
    t.expire(now=100.0)
    assert sorted(t.removed) == ["a", "b"]


@pytest.mark.parametrize("max_accounts", [1000, 2500])
def test_memory_is_bounded_under_three_times_the_cap(max_accounts):
    t = tracker(max_accounts=max_accounts)
    for i in range(3 * max_accounts):
        s = t.get_or_create(f"k{i}", ts=float(i), created=None)
        s.update(float(i), net=1, out_tok=0, in_tok=0, learn=True)
        assert len(t) <= max_accounts
    assert t.evicted >= 2 * max_accounts
    # The newest keys survive; eviction takes the stalest.
    assert f"k{3 * max_accounts - 1}" in t.states
    assert "k0" not in t.states


def test_eviction_prefers_the_stalest_of_the_oldest_inserted():
    t = tracker()
    for i in range(1000):
        s = t.get_or_create(f"k{i}", ts=0.0, created=None)
        # The first keys stay active, the next ones are stale.
        s.last_ts = 1000.0 if i < 50 else float(i)
    t.get_or_create("new", ts=2000.0, created=None)
    assert len(t) <= 1000
    assert all(f"k{i}" in t.states for i in range(50))
    assert "k50" not in t.states


def test_expected_rate_constants():
    # The windows the module docstring promises.
    assert (H_SHORT, H_10, H_MID, H_LONG) == (2.0, 10.0, 60.0, 1800.0)


def test_an_episode_is_on_a_new_network_when_it_begins_or_moves_there():
    s = AccountState(first_ts=0.0, created=-1e6)
    s.update(0.0, net=1000, out_tok=10, in_tok=10, learn=True)
    assert s.ep_new_net  # a first request: nothing is known
    s.update(100.0, net=1000, out_tok=10, in_tok=10, learn=True)
    assert not s.ep_new_net  # back after a silence, where it was before: a CI job, its owner
    s.update(110.0, net=2000, out_tok=10, in_tok=10, learn=True)
    assert s.ep_new_net  # ten seconds later from elsewhere: its key taken over mid-episode
    s.update(200.0, net=2000, out_tok=10, in_tok=10, learn=True)
    assert not s.ep_new_net
    # a network whose low hash bits collide with a known one's is still new (the second bitmap)
    s.update(300.0, net=1000 + (1 << 6) * 7, out_tok=10, in_tok=10, learn=True)
    assert (1000 + (1 << 6) * 7) & 63 == 1000 & 63 and s.ep_new_net
