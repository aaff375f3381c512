"""The ``ratehound`` command (stream/cli.py): its help, its flags, and what the worker's path imports."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream import cli
from stream.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)



def test_help_names_every_command():
    done = subprocess.run([sys.executable, "-m", "stream.cli", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0
    listed = re.findall(r"^    (\w+) ", done.stdout, flags=re.M)
    assert listed == _commands() and len(listed) == 9


def test_the_readme_commands_table_has_every_command():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Commands"):]
    assert set(re.findall(r"^\| `ratehound (\w+)", table, flags=re.M)) == set(_commands())


def test_flags_feed_the_settings_without_touching_the_environment(monkeypatch):
    monkeypatch.setenv("RATEHOUND_PARTITIONS", "8")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    before = dict(os.environ)
    a = cli.build_parser().parse_args(["worker", "--partitions", "2", "--broker", "kafka://k:9092"])
    s = cli._settings(a)
    assert (s.partitions, s.kafka_broker, s.redis_url) == (2, "kafka://k:9092", "redis://127.0.0.1:6379/3")
    assert dict(os.environ) == before


def test_a_bad_flag_is_named_as_the_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gateway", "--redis", "redis://127.0.0.1:6379/zero"])
    assert exc.value.code == "ratehound: bad setting: --redis: database 'zero' is not a number (redis://HOST:PORT/DB)"


def test_flag_help_gives_the_models_defaults():
    sub = next(x for x in cli.build_parser()._actions if isinstance(x, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub.choices["worker"]._actions}
    assert f"default {Settings.model_fields['redis_url'].default}" in helps["redis"]
    assert "env RATEHOUND_WEB_PORT, default 6066" in helps["web_port"]
    with pytest.raises(SettingsError):
        Settings(web_port=0)


def test_the_worker_path_loads_nothing_from_the_development_harness():
    # Everything `ratehound worker` imports, in a fresh interpreter: the worker, its sinks, the launch.
    probe = ("import sys; from stream import cli; cli.build_parser().parse_args(['worker']); "
             "import stream.app, stream.launch, stream.reload, stream.security, stream.sinks.redis, stream.topics, "
             "stream.gateway, stream.overrides; "
             "print(sorted(m for m in sys.modules if m == 'lab' or m.startswith('lab.')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    # lab.embedded would also bring its ctypes prctl and atexit hook for the embedded broker
    assert done.stdout.strip() == "[]"
