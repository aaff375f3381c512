"""The robustness matrix: every row runs, attack rows carry their attack and honest rows none."""

import pytest

import traffic
from traffic.background import LOOKALIKES
from traffic.matrix import HELD_OUT_SEEDS, MATRIX, TUNING_SEEDS, Row


def test_rows_name_existing_scenarios_and_cover_every_signal_and_look_alike():
    assert len({r.name for r in MATRIX}) == len(MATRIX)
    assert all(r.scenario in traffic.SCENARIOS and r.kind in ("attack", "honest") for r in MATRIX)
    attack = {r.name for r in MATRIX if r.kind == "attack"}
    assert {
        "base",
        "old_accounts",
        "low_ratio",
        "own_cards",
        "own_exits",
        "no_fingerprints",
        "slow_pace",
        "modest_burst",
        "glacial_shared_cards",
        "glacial_own_cards",
        "random_adversary",
    } <= attack
    honest = {r.name for r in MATRIX if r.kind == "honest"}
    assert honest == set(LOOKALIKES) | {"background"}
    assert not set(TUNING_SEEDS) & set(HELD_OUT_SEEDS)


def test_a_rows_defaults_are_its_scenarios():
    glacial = next(r for r in MATRIX if r.name == "glacial_own_cards")
    sim = glacial.generate(HELD_OUT_SEEDS[0])
    assert sim.duration == glacial.duration_s == 6 * 3600.0 and glacial.scale < 1.0
    assert "6 h" in glacial.description


@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.name)
def test_every_row_runs_and_only_attack_rows_attack(row: Row):
    sim = row.generate(TUNING_SEEDS[0], duration_s=900.0, scale=0.02, attack_scale=0.1)
    labels = sim.labels()["accounts"]
    seen = {ev["account_id"] for ev in sim.events()}
    attacking = {labels[a]["group"] for a in seen if labels[a]["label"] == "attack"}
    assert attacking == ({row.scenario} if row.kind == "attack" else set())


@pytest.mark.slow
@pytest.mark.parametrize("row", MATRIX, ids=lambda r: r.name)
def test_rows_at_their_own_size_stay_within_a_sane_file_size(row: Row):
    n = sum(1 for _ in row.generate(TUNING_SEEDS[0]).events())
    assert n <= 350_000 * row.duration_s / 3600.0  # about 300,000 an hour; the honest population varies by seed
