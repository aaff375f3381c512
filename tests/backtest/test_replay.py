"""Tests for backtest/replay.py: a recorded traffic file through the detector, scored by backtest/score.py."""

from __future__ import annotations

import gzip
import io
import json
import math
from functools import cache
from pathlib import Path

import pytest

import traffic
from backtest.replay import ReplayStats, decode_chunk, line_chunks, open_events, replay
from backtest.score import score
from detectors.config import DetectorConfig
from detectors.events import EventDecoder
from detectors.policy import encode_decision
from traffic.files import write_events, write_labels

T0 = 1_790_000_000.0


@cache
def scenario() -> tuple[tuple[dict, ...], dict]:
    sim = traffic.generate("mixed", seed=3, duration_s=900, scale=0.05, attack_scale=0.1)
    return tuple(sim.events()), sim.labels()


def write_scenario(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    events, labels = scenario()
    ev_path = tmp_path / f"events{suffix}"
    lab_path = tmp_path / "labels.json"
    assert write_events(events, str(ev_path)) == len(events)
    write_labels(labels, str(lab_path))
    return ev_path, lab_path


@pytest.fixture(scope="module")
def replays(tmp_path_factory) -> dict:
    """The scenario written as .jsonl.gz and .jsonl, each replayed once; decisions written as JSON Lines."""
    out = {}
    for suffix in (".jsonl.gz", ".jsonl"):
        d = tmp_path_factory.mktemp("replay")
        ev_path, lab_path = write_scenario(d, suffix)
        stats = ReplayStats()
        decisions = list(replay(ev_path, DetectorConfig(), stats))
        dec_path = d / "decisions.jsonl"
        dec_path.write_bytes(b"".join(encode_decision(x) + b"\n" for x in decisions))
        out[suffix] = (ev_path, lab_path, dec_path, decisions, stats)
    return out


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl"])
def test_replay_output_is_accepted_by_the_scorer(replays, suffix):
    ev_path, lab_path, dec_path, decisions, stats = replays[suffix]
    assert decisions
    assert stats.events == len(scenario()[0]) and stats.rejects == {}
    assert stats.decisions == len(decisions)
    assert [d.ts for d in decisions] == sorted(d.ts for d in decisions)
    result = score(ev_path, lab_path, dec_path)
    summary = result["summary"]
    assert summary["malformed_decision_lines"] == 0
    assert summary["decisions"] == len(decisions)
    attack_groups = [g for g in result["groups"] if g.startswith("attack:") and not g.endswith("pre_onset")]
    assert attack_groups
    assert summary["attack_account_recall"] > 0
    assert any(result["groups"][g]["accounts_hit"] > 0 for g in attack_groups)
    assert summary["benign_accounts_hit"] == 0


def test_gzip_and_plain_files_give_the_same_decisions(replays):
    a = [encode_decision(d) for d in replays[".jsonl.gz"][3]]
    b = [encode_decision(d) for d in replays[".jsonl"][3]]
    assert a and a == b


def test_open_events_reads_both(tmp_path):
    for name in ("x.jsonl", "x.jsonl.gz"):
        p = tmp_path / name
        write_events([{"event_id": "e", "ts": 1.0}], str(p))
        with open_events(p) as f:
            assert json.loads(f.read().strip()) == {"event_id": "e", "ts": 1.0}
    with gzip.open(tmp_path / "x.jsonl.gz", "rb") as f:
        assert f.read().startswith(b"{")


def test_line_chunks_skip_blank_lines_and_bound_the_chunk():
    lines = b"\n".join([b'{"a":%d}' % i for i in range(7)] + [b"", b"   "]) + b"\n\n"
    chunks = list(line_chunks(io.BytesIO(lines), size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [json.loads(x)["a"] for c in chunks for x in c] == list(range(7))


def _valid_line(i: int, ts: float | None = None) -> bytes:
    return json.dumps(
        {"event_id": f"e{i}", "ts": ts or T0 + i, "account_id": f"a{i % 5}", "ip": f"198.51.100.{i % 200}"}
    ).encode()


MALFORMED = [
    b'{"event_id":',
    b"not json at all",
    b"\xff\xfe\xfd",
    b'{"event_id":"x","ts":"soon"}',
    b"7",
    b'{"event_id":"x","ts":1.0,"account_id":"a","ip":"999.1.1.1"}',
]


def test_malformed_lines_go_to_rejects_and_do_not_stop_the_replay(tmp_path):
    events = scenario()[0][:8000]
    p = tmp_path / "events.jsonl"
    write_events(events, str(p))
    lines = p.read_bytes().splitlines()
    # Bad lines near the end, in their own chunk: everything before them is replayed.
    cut = len(lines) - 3
    p.write_bytes(b"\n".join(lines[:cut] + MALFORMED + lines[cut:]) + b"\n")
    stats = ReplayStats()
    decisions = list(replay(p, DetectorConfig(), stats))
    assert sum(stats.rejects.values()) >= 1
    assert set(stats.rejects) <= {"not_json", "schema", "bad_ts", "not_object", "bad_ip"}
    assert stats.events >= cut - 5000
    assert decisions
    assert stats.decisions == len(decisions)


def test_late_lines_are_counted_as_rejects(tmp_path):
    lines = [_valid_line(i, T0 + 1000.0 + i) for i in range(10)] + [_valid_line(99, T0 - 3000.0)]  # > 1 h behind a4
    p = tmp_path / "late.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    stats = ReplayStats()
    list(replay(p, DetectorConfig(), stats))
    assert stats.events == 11  # decoded; the detector then turned one away
    assert stats.rejects == {"late": 1}


def test_recorded_file_is_trusted_for_time(tmp_path):
    # Events far in the future of the wall clock are fine in a file.
    p = tmp_path / "future.jsonl"
    p.write_bytes(b"\n".join(_valid_line(i, 4e9 + i) for i in range(5)) + b"\n")
    stats = ReplayStats()
    list(replay(p, DetectorConfig(), stats))
    assert stats.events == 5 and stats.rejects == {}


def test_one_malformed_line_rejects_only_itself(tmp_path):
    lines = [_valid_line(i) for i in range(20)]
    lines.insert(10, b'{"event_id":')
    lines.insert(15, b"not json at all")
    p = tmp_path / "events.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    stats = ReplayStats()
    list(replay(p, DetectorConfig(), stats))
    assert stats.events == 20
    assert stats.rejects == {"not_json": 2}


def test_a_line_cannot_smuggle_extra_elements(tmp_path):
    lines = [_valid_line(0), b"7, 8", _valid_line(1)]
    chunk = next(line_chunks(io.BytesIO(b"\n".join(lines))))
    ok, bad = decode_chunk(EventDecoder(), chunk, now=math.inf)
    assert len(ok) == 2 and len(bad) == 1


def test_one_far_future_line_does_not_make_the_rest_late(tmp_path):
    lines = [_valid_line(i) for i in range(10)]
    lines.insert(3, json.dumps({"event_id": "bad", "ts": 1e15, "account_id": "x", "ip": "10.0.0.1"}).encode())
    p = tmp_path / "events.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    stats = ReplayStats()
    list(replay(p, DetectorConfig(), stats))
    assert stats.rejects.get("late", 0) == 0
    assert stats.rejects == {"future_ts": 1}
