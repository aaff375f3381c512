"""A worker process from start to exit: checks before connecting, plain logs, a bounded shutdown.

Before anything connects for good, what cannot work stops the process with one line: a bad
setting or thresholds file, a Kafka login refused, no broker within ``RATEHOUND_CONNECT_TIMEOUT_S``,
a Redis that refuses us (a database that does not exist, a wrong password). A Redis that is only
down is not a reason to stop: decisions queue until it is back.

On SIGTERM or SIGINT, Faust stops its services one by one; with the broker gone, its consumer
and producer retry without end and the process would never exit. A watchdog armed by the
signal ends it after ``RATEHOUND_SHUTDOWN_TIMEOUT_S`` (20 s by default, within Kubernetes'
30 s grace period) with one line. Leaving then is as safe as a SIGKILL: input is committed only
once a snapshot holds its effects, so the next owner reads again what was not committed.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from typing import Any, cast

import faust
from mode.utils.logging import DEFAULT_FORMATTERS

from detectors.config import DetectorConfig
from stream.app import Worker
from stream.settings import Settings

log = logging.getLogger(__name__)


class BoundedShutdownWorker(faust.Worker):
    """Faust's worker, whose shutdown on a signal takes at most ``shutdown_timeout_s``."""

    def __init__(self, *services: Any, shutdown_timeout_s: float, broker: str, **kwargs: Any):
        super().__init__(*services, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.broker = broker

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(self.shutdown_timeout_s, self._give_up, args=(signal,))
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)

    def _give_up(self, sig: signal.Signals) -> None:
        # A thread: the event loop may be stuck in a retry. Straight to the descriptor (mode has
        # sys.stderr going through logging), and os._exit skips what cannot finish anyway.
        os.write(2, f"ratehound worker: still stopping {self.shutdown_timeout_s:g} s after {sig.name} (is the "
                    f"broker at {self.broker} reachable?): exiting now; input not yet committed is read again "
                    f"by the next owner (RATEHOUND_SHUTDOWN_TIMEOUT_S)\n".encode())
        os._exit(1)


def plain_unless_terminal() -> dict[str, Any]:
    """Faust's logging config, with colours only when the log goes to a terminal.

    mode's coloured formatter decides by whether *stdout* is a terminal, but the handler writes
    to *stderr*: ``ratehound worker 2>worker.log`` from a terminal filled the file with escape codes
    (and, with ``logfile=sys.stderr`` below, Faust's recovery tables with line-drawing codes)."""
    colored: dict[str, Any] = {**cast(dict[str, Any], DEFAULT_FORMATTERS["colored"]), "stream": sys.stderr}
    return {"merge": True, "formatters": {"colored": colored if sys.stderr.isatty() else DEFAULT_FORMATTERS["default"]}}


def run_worker(settings: Settings, cfg: DetectorConfig, loglevel: str) -> None:
    """Run one worker until a signal stops it (connections checked by the caller: see stream/cli.py)."""
    # Millions of small long-lived objects (account states) make Python's default collection
    # thresholds scan them again and again; collect young objects less often.
    gc.set_threshold(50_000, 50, 100)
    worker = Worker(settings, cfg)
    BoundedShutdownWorker(worker.app, loglevel=loglevel, quiet=True, logfile=sys.stderr,
                          logging_config=plain_unless_terminal(),
                          shutdown_timeout_s=settings.shutdown_timeout_s,
                          broker=settings.bootstrap).execute_from_commandline()
