"""Worker settings from the environment and flags: parsed and range-checked at load, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    # a developer's own RATEHOUND_* must not decide what these tests see
    for name in [v for v in os.environ if v.startswith(("RATEHOUND_", "KAFKA_BROKER"))]:
        monkeypatch.delenv(name)


def test_defaults_load():
    s = Settings()
    assert (s.partitions, s.batch_size, s.commit_interval_s) == (4, 2000, 2.8)


def test_numbers_are_read_with_their_type(monkeypatch):
    monkeypatch.setenv("RATEHOUND_PARTITIONS", "12")
    monkeypatch.setenv("RATEHOUND_COMMIT_INTERVAL_S", "0.5")
    s = Settings()
    assert s.partitions == 12 and isinstance(s.partitions, int)
    assert s.commit_interval_s == 0.5


@pytest.mark.parametrize(("name", "value", "says"), [
    ("RATEHOUND_PARTITIONS", "four", "RATEHOUND_PARTITIONS: 'four' is not an integer"),
    ("RATEHOUND_PARTITIONS", "2.5", "RATEHOUND_PARTITIONS: '2.5' is not an integer"),
    ("RATEHOUND_PARTITIONS", "0", "RATEHOUND_PARTITIONS: 0 must be a finite number of at least"),
    ("RATEHOUND_BATCH", "-1", "RATEHOUND_BATCH: -1 must be a finite number of at least"),
    ("RATEHOUND_COMMIT_INTERVAL_S", "0", "RATEHOUND_COMMIT_INTERVAL_S: 0.0 must be a finite number of at least"),
    ("RATEHOUND_COMMIT_INTERVAL_S", "nan", "RATEHOUND_COMMIT_INTERVAL_S: nan must be a finite number of at least"),
    ("RATEHOUND_BATCH_WITHIN_S", "inf", "RATEHOUND_BATCH_WITHIN_S: inf must be a finite number of at least"),
    ("RATEHOUND_REBALANCE_TIMEOUT_S", "", "RATEHOUND_REBALANCE_TIMEOUT_S: '' is not a number"),
    ("RATEHOUND_WEB_PORT", "70000", "RATEHOUND_WEB_PORT: 70000 is not a port number"),
])
def test_a_bad_number_names_its_variable(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="^" + says.replace("(", r"\(")):
        Settings()


def test_values_given_directly_are_checked_too():
    with pytest.raises(SettingsError, match="RATEHOUND_SNAPSHOT_EVERY_S"):
        Settings(snapshot_every_s=0.0)


_NUMBERS = sorted(f for f, info in Settings.model_fields.items() if info.annotation in (int, float))


def test_every_number_setting_has_a_least_value():
    for attr in _NUMBERS:
        with pytest.raises(SettingsError, match="must be a finite number of at least"):
            Settings(**{attr: -1})


@given(st.sampled_from(_NUMBERS), st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=6) | st.integers(-5, 5).map(str))
def test_any_number_setting_loads_or_fails_with_its_variable(attr, raw):
    name = Settings.variable(attr)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(name, raw)
        try:
            s = Settings()
        except SettingsError as exc:
            assert str(exc).startswith(name + ": ")
        else:
            assert getattr(s, attr) > 0


def test_the_worker_command_refuses_a_bad_setting_before_connecting():
    # A broker address nobody listens on: the refusal must come before any connection is tried.
    env = dict(os.environ, RATEHOUND_PARTITIONS="0", KAFKA_BROKER="127.0.0.1:1")
    done = subprocess.run([sys.executable, "-m", "stream.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "ratehound: bad setting: RATEHOUND_PARTITIONS: 0 must be a finite number of at least" in done.stderr


def test_every_command_refuses_a_bad_setting_with_the_same_message():
    env = dict(os.environ, RATEHOUND_BATCH="lots")
    done = subprocess.run([sys.executable, "-m", "stream.cli", "gateway", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ratehound: bad setting: RATEHOUND_BATCH: 'lots' is not an integer" in done.stderr
    assert "Traceback" not in done.stderr
