"""Tests for detectors/population.py: features in the unit cube and the shared HalfSpaceTrees."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from detectors.population import PopulationModel, _unit_log, features
from detectors.rules.population_outlier import PopulationThresholds

FEATURES = {"rate_short", "rate_mid", "rate_vs_baseline", "harvest", "switch_share", "timing_cv", "age"}
SPECIAL = [0.0, -0.0, -1.0, 1e-300, -1e-3, 1e308, -1e308, math.inf, -math.inf, math.nan]
any_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(SPECIAL)
no_nan = st.floats(allow_nan=False, allow_infinity=True)


def in_unit(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and 0.0 <= x <= 1.0


@pytest.mark.parametrize(
    "x, expected",
    [
        (0.0, 0.0),
        (-5.0, 0.0),
        (math.nan, 0.0),
        (math.inf, 1.0),
        (-math.inf, 0.0),
        (1e-9, 0.0),
        (1e9, 1.0),
        (10.0, 0.5),
    ],
)
def test_unit_log(x, expected):
    assert _unit_log(x, 0.0, 2.0) == pytest.approx(expected)


def test_features_of_a_plain_account():
    f = features(1.0, 0.5, 0.1, 2.0, 0.0, 0.3, 86400.0)
    assert set(f) == FEATURES
    assert all(in_unit(v) for v in f.values())
    assert f["switch_share"] == 0.0 and f["timing_cv"] == pytest.approx(0.1)


def test_features_are_monotone_in_rate_and_age():
    lo = features(0.1, 0.1, 0.1, 1.0, 0.0, 1.0, 3600.0)
    hi = features(10.0, 10.0, 0.1, 1.0, 0.0, 1.0, 86400.0 * 365)
    assert hi["rate_short"] > lo["rate_short"] and hi["rate_vs_baseline"] > lo["rate_vs_baseline"]
    assert hi["age"] > lo["age"]


@settings(max_examples=400, deadline=None)
@given(no_nan, no_nan, no_nan, no_nan, no_nan, no_nan, no_nan)
def test_features_in_unit_cube_for_any_non_nan_floats(rs, rm, base, harvest, switch, cv, age):
    assume(base + 1e-3 != 0.0)  # see test_features_baseline_of_minus_one_thousandth
    f = features(rs, rm, base, harvest, switch, cv, age)
    assert set(f) == FEATURES
    for k, v in f.items():
        assert in_unit(v), (k, v)


@settings(max_examples=300, deadline=None)
@given(any_float, any_float, any_float, any_float, any_float, any_float, any_float)
def test_features_in_unit_cube_for_any_floats(rs, rm, base, harvest, switch, cv, age):
    assume(base + 1e-3 != 0.0)
    f = features(rs, rm, base, harvest, switch, cv, age)
    for k, v in f.items():
        assert in_unit(v), (k, v)


@pytest.mark.parametrize("which", ["switch_share", "timing_cv"])
def test_features_nan_switch_share_and_timing_cv(which):
    args = {
        "rate_short": 1.0,
        "rate_mid": 1.0,
        "baseline": 1.0,
        "harvest": 1.0,
        "switch_share": 0.0,
        "timing_cv": 1.0,
        "age_s": 1e6,
    }
    args[which] = math.nan
    f = features(**args)
    assert in_unit(f[which])


def test_features_baseline_of_minus_one_thousandth():
    f = features(1.0, 1.0, -1e-3, 1.0, 0.0, 1.0, 1e6)
    assert in_unit(f["rate_vs_baseline"])


class SpyModel:
    """Stands in for HalfSpaceTrees and records what River would be handed."""

    def __init__(self) -> None:
        self.seen: list[dict[str, float]] = []

    def learn_one(self, x):
        self.seen.append(dict(x))

    def score_one(self, x):
        self.seen.append(dict(x))
        return 0.5


def test_warmup_scores_zero_then_the_model_scores():
    m = PopulationModel(PopulationThresholds(warmup_samples=30, n_trees=3, height=4, window_size=10))
    x = features(0.1, 0.1, 0.1, 0.5, 0.0, 1.0, 1e7)
    for i in range(30):
        assert m.score_one(x) == 0.0, i
        m.learn_one(x)
    assert m.learnt == 30
    odd = features(50.0, 50.0, 0.01, 20.0, 1.0, 0.0, 100.0)
    s = m.score_one(odd)
    assert 0.0 <= s <= 1.0
    assert s > m.score_one(x)


def test_warmup_zero_scores_at_once():
    m = PopulationModel(PopulationThresholds(warmup_samples=0, n_trees=2, height=3, window_size=10))
    m.model = SpyModel()
    assert m.score_one(features(1, 1, 1, 1, 0, 1, 1e6)) == 0.5


def test_model_is_deterministic_for_a_seed():
    def scores():
        m = PopulationModel(PopulationThresholds(warmup_samples=10, n_trees=3, height=4, window_size=10, seed=7))
        out = []
        for i in range(60):
            x = features(0.1 * (i % 7 + 1), 0.1, 0.1, 0.5 + i % 3, (i % 5) / 5, 1.0, 1e6 + i)
            out.append(m.score_one(x))
            m.learn_one(x)
        return out

    assert scores() == scores()


@settings(max_examples=200, deadline=None)
@given(no_nan, no_nan, no_nan, no_nan, no_nan, no_nan, no_nan)
def test_nothing_non_finite_reaches_river(rs, rm, base, harvest, switch, cv, age):
    assume(base + 1e-3 != 0.0)
    m = PopulationModel(PopulationThresholds(warmup_samples=0))
    spy = m.model = SpyModel()
    x = features(rs, rm, base, harvest, switch, cv, age)
    m.score_one(x)
    m.learn_one(x)
    assert len(spy.seen) == 2
    for seen in spy.seen:
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in seen.values())


unit_point = st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=7, max_size=7)


@settings(max_examples=30, deadline=None)
@given(st.lists(unit_point, min_size=1, max_size=400), st.integers(0, 50), st.integers(10, 60))
def test_score_then_learn_equals_river_score_one_then_learn_one(points, warmup, window):
    """The one-walk shortcut gives River's scores and leaves the trees exactly as River would."""
    cfg = PopulationThresholds(warmup_samples=warmup, n_trees=10, height=8, window_size=window)
    fused, river = PopulationModel(cfg), PopulationModel(cfg)
    for p in points:
        x = features(*p)
        expected = river.score_one(x)
        river.learn_one(x)
        assert fused.score_then_learn(x) == expected
    masses = [[(n.l_mass, n.r_mass) for n in t.iter_dfs()] for t in river.model.trees]
    assert [[(n.l_mass, n.r_mass) for n in t.iter_dfs()] for t in fused.model.trees] == masses
    assert (fused.model.counter, fused.learnt) == (river.model.counter, river.learnt)
