"""The sink interface: one destination of a worker's output, its retry policy and its metrics.

Every sink counts the same way, here: ``ratehound_sink_writes_total{sink, result}`` per item
written or failed, ``ratehound_sink_up{sink}`` (1 while its last write succeeded) and
``ratehound_sink_queued{sink}`` (items waiting for it to come back). A change of state is
logged once (down, then back), never on every failed retry.

What a sink does when its destination fails is its retry policy, stated in its ``retry``:

- Redis (:mod:`stream.sinks.redis`) queues the decisions (bounded) and writes them on the next
  write or flush; ``write`` returns False meanwhile. The gateway is what reads it, so a lost
  decision would be a hole; the queue and the periodic re-assertion of what is in force close it.
- The decisions topic and the DLQ (:mod:`stream.sinks.topics`) go through Faust's producer,
  which retries each send until its request timeout; a send that still fails raises
  :class:`SinkError`, so the batch that produced it is not acknowledged and is read again.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from stream import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")



class SinkError(RuntimeError):
    """A sink could not deliver and cannot queue: the input behind it must not be acknowledged."""


class Sink(ABC, Generic[T]):
    """Where one kind of output goes; ``name`` is its ``sink`` label."""

    name: ClassVar[str]  # one of metrics.SINKS
    retry: ClassVar[str]

    def __init__(self) -> None:
        self.healthy = True
        self.last_error = ""  # what the last failure said, for a command's one line

    @abstractmethod
    async def write(self, items: Sequence[T]) -> bool:
        """Deliver ``items``; True once delivered. A sink that queues returns False when it could not
        deliver yet; one that cannot raises :class:`SinkError`."""

    async def flush(self) -> bool:
        """Try again what is queued; True when nothing is left."""
        return True

    async def close(self) -> None:
        """Release connections."""

    def delivered(self, n: int) -> None:
        """``n`` items written."""
        metrics.SINK_WRITES.labels(self.name, "ok").inc(n)
        self.up()

    def failed(self, n: int, exc: BaseException) -> None:
        """``n`` items (or one round trip) not written."""
        metrics.SINK_WRITES.labels(self.name, "error").inc(n)
        self.last_error = str(exc) or repr(exc)
        if self.healthy:
            log.warning("%s sink failed (%s): %r", self.name, self.retry, exc)
        self.healthy = False
        metrics.SINK_UP.labels(self.name).set(0)

    def up(self) -> None:
        """The destination answered (a write, a heartbeat, a re-assertion)."""
        if not self.healthy:
            log.warning("%s sink is back", self.name)
        self.healthy = True
        metrics.SINK_UP.labels(self.name).set(1)

    def queued(self, n: int) -> None:
        metrics.SINK_QUEUED.labels(self.name).set(n)
