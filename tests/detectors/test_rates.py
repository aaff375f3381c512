"""Tests for detectors/rates.py: exponential decay, decayed rates and their bias correction."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.rates import LN2, AccountRates, decay, rate

finite = st.floats(min_value=0.0, max_value=1e9, allow_nan=False)
half_lives = st.floats(min_value=0.1, max_value=1e5)


def test_decay_halves_per_half_life():
    assert decay(8.0, 10.0, 10.0) == pytest.approx(4.0)
    assert decay(8.0, 20.0, 10.0) == pytest.approx(2.0)
    assert decay(8.0, 5.0, 10.0) == pytest.approx(8.0 / math.sqrt(2))


@pytest.mark.parametrize("dt", [0.0, -0.001, -3.0, -1e9])
def test_decay_of_late_or_same_instant_event_is_identity(dt):
    assert decay(8.0, dt, 10.0) == 8.0


def test_decay_of_a_very_long_gap_is_zero_not_an_error():
    assert decay(1e6, 1e12, 1.0) == 0.0


@given(finite, st.floats(min_value=0.0, max_value=1e6), st.floats(min_value=0.0, max_value=1e6), half_lives)
def test_decay_composes(count, dt1, dt2, h):
    once = decay(count, dt1 + dt2, h)
    twice = decay(decay(count, dt1, h), dt2, h)
    assert once == pytest.approx(twice, rel=1e-9, abs=1e-300)


@given(finite, st.floats(min_value=-1e6, max_value=1e6), half_lives)
def test_decay_never_grows_and_stays_non_negative(count, dt, h):
    d = decay(count, dt, h)
    assert 0.0 <= d <= count


def test_rate_of_steady_state_count():
    # A steady r/s for a long time leaves a decayed count of r * h / ln2.
    for r in (0.1, 1.0, 25.0):
        for h in (2.0, 60.0, 1800.0):
            assert rate(r * h / LN2, h) == pytest.approx(r)


@pytest.mark.parametrize("h", [10.0, 60.0, 600.0, 1800.0])
@pytest.mark.parametrize("watched", [5.0, 30.0, 300.0])
def test_bias_correction_recovers_the_true_rate_after_a_short_watch(h, watched):
    # 10 events/s for `watched` seconds, counted one by one.
    c = 0.0
    n = int(watched * 10)
    for _ in range(n):
        c = decay(c, 0.1, h) + 1.0
    corrected = rate(c, h, observed_s=watched)
    assert corrected == pytest.approx(10.0, rel=0.06)
    assert rate(c, h) <= corrected


def test_bias_correction_is_a_no_op_after_a_long_watch_and_ignored_when_absent():
    c = 5.0 * 60.0 / LN2
    assert rate(c, 60.0, observed_s=1e6) == pytest.approx(rate(c, 60.0))
    for observed in (None, 0.0, -5.0):
        assert rate(c, 60.0, observed_s=observed) == rate(c, 60.0)


def test_bias_correction_with_a_tiny_watch_does_not_explode():
    r = rate(1.0, 1800.0, observed_s=1e-12)
    assert math.isfinite(r)


@given(finite, half_lives, st.none() | st.floats(min_value=-1e6, max_value=1e9))
def test_rate_is_finite_and_non_negative(count, h, observed):
    r = rate(count, h, observed)
    assert math.isfinite(r) and r >= 0.0


def test_account_rates_short_window_sees_a_burst_first():
    r = AccountRates(half_lives=(2.0, 600.0))
    for t in range(600):  # one request a second for ten minutes
        r.update(ts=float(t))
    # Read right after an event, the decayed estimate sits at the top of its sawtooth.
    k = LN2 / 2.0
    assert r.rate(2.0) == pytest.approx(k / (1 - math.exp(-k)), rel=0.01)
    for i in range(100):  # then 20/s for five seconds
        r.update(ts=600.0 + i / 20)
    assert r.rate(2.0) > 10.0
    assert r.rate(600.0) < 2.0


def test_account_rates_tokens_and_last_ts():
    r = AccountRates(half_lives=(10.0,))
    r.update(ts=100.0, tokens=50)
    r.update(ts=110.0, tokens=50)
    assert r.tokens[0] == pytest.approx(75.0)
    assert r.counts[0] == pytest.approx(1.5)
    assert r.last_ts == 110.0


def test_account_rates_late_event_weighs_its_age_without_moving_time_back():
    r = AccountRates(half_lives=(10.0, 60.0))
    r.update(ts=100.0, tokens=10)
    r.update(ts=110.0, tokens=10)
    before, tokens_before = list(r.counts), list(r.tokens)
    r.update(ts=50.0, tokens=10)  # a minute late: 1/64 of a request on the 10 s window, 1/2 on the 60 s one
    assert r.counts == pytest.approx([before[0] + 0.5 ** 6, before[1] + 0.5])
    assert r.tokens == pytest.approx([tokens_before[0] + 10 * 0.5 ** 6, tokens_before[1] + 5.0])
    assert r.last_ts == 110.0
    # The next on-time event decays from 110, not from 50.
    r.update(ts=120.0)
    assert r.counts[0] == pytest.approx((before[0] + 0.5 ** 6) / 2 + 1.0)


def test_account_rates_do_not_depend_on_arrival_order():
    in_order, reversed_ = AccountRates(half_lives=(2.0, 60.0)), AccountRates(half_lives=(2.0, 60.0))
    times = [0.0, 1.5, 2.0, 7.25, 30.0, 31.0]
    for t in times:
        in_order.update(ts=t, tokens=3)
    for t in reversed(times):
        reversed_.update(ts=t, tokens=3)
    assert reversed_.counts == pytest.approx(in_order.counts) and reversed_.tokens == pytest.approx(in_order.tokens)


def test_account_rates_unknown_half_life_is_an_error():
    r = AccountRates(half_lives=(10.0,))
    with pytest.raises(ValueError):
        r.rate(60.0)


@given(st.lists(st.floats(min_value=0.0, max_value=1e7), min_size=1, max_size=50))
def test_account_rates_counts_never_exceed_event_count(times):
    r = AccountRates(half_lives=(2.0, 60.0))
    for t in times:
        r.update(ts=t, tokens=1)
    for c in r.counts:
        assert 0.0 < c <= len(times) + 1e-9
    assert r.last_ts == max(times)
