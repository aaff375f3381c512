"""A worker process's edges (stream/launch.py): its shutdown bound with the broker gone, its plain log."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time

import pytest

from lab.embedded import EmbeddedBroker, free_port, wait_until
from stream.settings import Settings

pytestmark = pytest.mark.integration
BOUND_S = Settings.model_fields["shutdown_timeout_s"].default  # RATEHOUND_SHUTDOWN_TIMEOUT_S, as shipped


def test_sigterm_with_the_broker_killed_exits_within_the_shutdown_bound(start_worker, redis_url):
    with EmbeddedBroker() as broker:  # its own: this one is killed
        w = start_worker(redis_url, broker_url=broker.url)
        broker.kill()
        time.sleep(2.0)  # the worker's clients notice and start retrying
        t0 = time.monotonic()
        code = w.stop(signal.SIGTERM, timeout=BOUND_S + 30)
        took = time.monotonic() - t0
    assert code == 1, w.log_text()
    assert took < BOUND_S + 5, f"{took:.1f} s"
    assert (f"ratehound worker: still stopping {BOUND_S:g} s after SIGTERM (is the broker at {broker.bootstrap} "
            "reachable?): exiting now") in w.log_text(tail=5000)


def test_log_is_plain_text_when_stderr_is_not_a_terminal(broker, redis_url, tmp_path):
    # From a terminal with the log redirected (`ratehound worker 2>worker.log`): stdout is the terminal.
    log = tmp_path / "worker.log"
    env = dict(os.environ, KAFKA_BROKER=broker.url, REDIS_URL=redis_url, RATEHOUND_APP_ID=f"rh-plain-{os.getpid()}",
               RATEHOUND_WEB_PORT=str(free_port()), RATEHOUND_DATA_DIR=str(tmp_path / "data"))
    terminal, child_side = pty.openpty()
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker", "--loglevel", "info"], env=env,
                                stdin=subprocess.DEVNULL, stdout=child_side, stderr=err)
    os.close(child_side)
    try:
        # the recovery tables Faust logs once the worker is ready are drawn with escape codes on a terminal
        assert wait_until(lambda: b"Worker ready" in log.read_bytes(), timeout=60), log.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=BOUND_S + 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(terminal)
    text = log.read_bytes()
    assert b"Highwater" in text  # the table is there, drawn in plain text
    assert b"\x1b" not in text
