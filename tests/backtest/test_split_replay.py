"""Tests for backtest/split_replay.py: replay on two processes says exactly what one process says."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import orjson
import pytest

import traffic
from backtest.replay import ReplayStats, decoded_chunks, replay
from backtest.split_replay import SplitDetector, SplitReplayError
from detectors.account_stage import AccountStage
from detectors.config import DetectorConfig, parse_config
from detectors.pipeline import Detector
from detectors.policy import encode_decision
from traffic.arrival import out_of_step
from traffic.files import write_events


@pytest.fixture(scope="module")
def attack_file(tmp_path_factory) -> Path:
    """Fifteen minutes of mixed traffic with every attack, as one file, with a few bad and late lines."""
    sim = traffic.generate("mixed", seed=11, duration_s=900, scale=0.05, attack_scale=0.1)
    events = list(sim.events())
    path = tmp_path_factory.mktemp("split") / "events.jsonl"
    write_events(events, str(path))
    lines = path.read_bytes().splitlines()
    late = dict(events[len(events) // 2], event_id="late-one", ts=events[0]["ts"] - 7200.0)
    write_events([late], str(path.with_suffix(".late")))
    lines[len(lines) * 3 // 4:len(lines) * 3 // 4] = [b"not json", b'{"event_id": 7}',
                                                      path.with_suffix(".late").read_bytes().strip()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def out_of_step_file(attack_file) -> Path:
    """The same file in the order a worker reads four round-robin partitions: decisions carry the
    watermark, a later time than their event's."""
    lines = [line + b"\n" for line in attack_file.read_bytes().splitlines() if b'"ts"' in line]
    path = attack_file.with_name("out-of-step.jsonl")
    path.write_bytes(b"".join(out_of_step(lines, per_message=50, per_fetch=3)))
    return path


def run(path: Path, processes: int, cfg: DetectorConfig | None = None) -> tuple[list[bytes], ReplayStats]:
    stats = ReplayStats()
    found = replay(path, cfg or DetectorConfig(), stats, processes=processes)
    return [encode_decision(d) for d in found], stats


# The shipped population model warms up on 2,000 accounts: too many for a short file to see it decide.
EAGER_POPULATION = parse_config({"population": {"warmup_samples": 100, "review_score": 0.9}})


@pytest.mark.parametrize("cfg", [DetectorConfig(), EAGER_POPULATION], ids=["shipped", "eager-population"])
def test_two_processes_decide_exactly_as_one(attack_file, cfg):
    one, one_stats = run(attack_file, 1, cfg)
    two, two_stats = run(attack_file, 2, cfg)
    reasons = {d.split(b'"reason":"')[1].split(b'"')[0] for d in one}
    assert len(reasons) >= 4, reasons  # account and group rules both decided something
    if cfg is EAGER_POPULATION:
        assert b"population_outlier" in reasons
    assert two == one  # the same decisions, byte for byte, in the same order
    assert vars(two_stats) == vars(one_stats)
    assert one_stats.rejects.get("late") == 1 and one_stats.rejects.get("not_json") == 1


def test_two_processes_stamp_the_watermark_as_one_does(out_of_step_file):
    one, _ = run(out_of_step_file, 1)
    two, _ = run(out_of_step_file, 2)
    assert one and two == one
    in_order = out_of_step_file.with_name("in-order.jsonl")
    in_order.write_bytes(b"".join(sorted(out_of_step_file.read_bytes().splitlines(keepends=True),
                                         key=lambda line: orjson.loads(line)["ts"])))
    assert run(in_order, 1)[0] != one  # read out of order, decisions carry later times


def test_a_failing_account_stage_is_an_error_not_a_gap(attack_file, monkeypatch):
    real = AccountStage.process_one

    def failing(self, ev, decisions, rejects):
        if ev.event_id == "late-one":
            raise ZeroDivisionError("planted in the account stage")
        return real(self, ev, decisions, rejects)

    monkeypatch.setattr(AccountStage, "process_one", failing)  # the forked child inherits it
    with pytest.raises(SplitReplayError, match="planted in the account stage"):
        run(attack_file, 2)
    assert not multiprocessing.active_children()


def test_a_killed_account_process_is_reported(attack_file):
    cfg = DetectorConfig()
    with pytest.raises(SplitReplayError, match="ended"), SplitDetector(cfg) as split:
        assert split.child_pid is not None
        os.kill(split.child_pid, signal.SIGKILL)
        for _ in split.process_chunks(decoded_chunks(attack_file, cfg, ReplayStats())):
            pass
    assert not multiprocessing.active_children()


def test_a_consumer_that_stops_early_stops_the_child(attack_file):
    decisions = replay(attack_file, DetectorConfig(), processes=2)
    assert next(decisions) is not None
    t = time.monotonic()
    decisions.close()
    assert time.monotonic() - t < 5.0
    assert not multiprocessing.active_children()


def test_only_one_or_two_processes(attack_file):
    with pytest.raises(ValueError, match="1 or 2"):
        next(replay(attack_file, DetectorConfig(), processes=3))


def test_the_population_model_learns_every_account_in_the_same_order(attack_file):
    cfg = EAGER_POPULATION
    det = Detector(cfg)
    for events in decoded_chunks(attack_file, cfg, ReplayStats()):
        det.process(events)
    with SplitDetector(cfg) as split:
        for _ in split.process_chunks(decoded_chunks(attack_file, cfg, ReplayStats())):
            pass
    one, two = det.population.model, split.population.model
    assert one.learnt > 500 and two.learnt == one.learnt

    def masses(m):
        return [[(n.l_mass, n.r_mass) for n in t.iter_dfs()] for t in m.model.trees]

    assert masses(two) == masses(one)
