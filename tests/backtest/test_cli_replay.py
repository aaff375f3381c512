"""Tests for ``ratehound replay`` (stream/cli.py): the command on both process counts, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import traffic
from traffic.files import write_events

ROOT = Path(__file__).resolve().parents[2]


def _default_sigint() -> None:
    # A suite started in the background (`nohup make test &`) ignores SIGINT, and an ignored signal stays
    # ignored across exec: the command under test must get Ctrl-C as a terminal would give it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ratehound(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stream.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_default_sigint, **kw)


def test_replay_command_gives_the_same_file_on_one_and_two_processes(tmp_path):
    sim = traffic.generate("mixed", seed=12, duration_s=900, scale=0.05, attack_scale=0.1)
    events = tmp_path / "events.jsonl.gz"
    write_events(sim.events(), str(events))
    outs = []
    for processes in ("1", "2"):
        out = tmp_path / f"decisions{processes}.jsonl"
        p = ratehound("replay", str(events), "--out", str(out), "--processes", processes)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert b"replayed " in err and b" decisions" in err
        outs.append(out.read_bytes())
    assert outs[0].count(b"\n") >= 10
    assert outs[1] == outs[0]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def test_ctrl_c_stops_both_processes_with_one_clear_line(tmp_path):
    # Enough plain events to keep a replay busy for seconds: a quiet crowd of accounts.
    events = tmp_path / "events.jsonl"
    t0 = 1_790_000_000.0
    with open(events, "w") as f:
        for i in range(400_000):
            f.write(f'{{"event_id":"e{i}","ts":{t0 + i / 100:.2f},"account_id":"a{i % 3000}",'
                    f'"ip":"198.51.{i % 200}.{i % 250}"}}\n')
    out = tmp_path / "d.jsonl"
    p = ratehound("replay", str(events), "--out", str(out), "--processes", "2", start_new_session=True)
    deadline = time.monotonic() + 60
    while not _children(p.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _children(p.pid)
    assert children, "the account stage's process never started"
    time.sleep(1.0)
    os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the group
    _, err = p.communicate(timeout=30)
    text = err.decode()
    assert p.returncode == 1, text
    assert "ratehound replay: interrupted after reading" in text and f"{out} not written" in text
    assert text.count("\n") == 1 and "Traceback" not in text, text
    assert list(tmp_path.iterdir()) == [events]  # no decisions file, whole or partial, and no temporary one
    for c in children:
        assert not Path(f"/proc/{c}").exists() or "zombie" in Path(f"/proc/{c}/status").read_text()


def test_a_reader_that_stops_early_ends_the_replay_quietly(tmp_path):
    sim = traffic.generate("mixed", seed=12, duration_s=900, scale=0.05, attack_scale=0.1)
    events = tmp_path / "events.jsonl"
    write_events(sim.events(), str(events))
    p = ratehound("replay", str(events), "--out", "-", "--processes", "2")  # as `ratehound replay ... | head -1`
    assert p.stdout is not None and p.stdout.readline().startswith(b"{")
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert b"Traceback" not in err, err.decode()
