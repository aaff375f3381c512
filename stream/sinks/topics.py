"""Sinks onto Kafka topics through Faust's producer: the decisions topic (audit) and the DLQ."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detectors.policy import Decision, encode_decision
from stream import metrics
from stream.records import DeadLetter, encode_dead_letter
from stream.sinks.base import Sink, SinkError


class _TopicSink(Sink[Any]):
    retry = ("Faust's producer retries each send until its request timeout; then the batch is not "
             "acknowledged and is read again")

    def __init__(self, topic: Any):
        super().__init__()
        self.topic = topic

    async def send(self, value: bytes, key: bytes | None = None) -> None:
        try:
            await self.topic.send(key=key, value=value)
        except Exception as exc:  # noqa: BLE001 - whatever the producer raised, the batch must not be acked
            self.failed(1, exc)
            raise SinkError(f"{self.name} topic: {exc!r}") from exc
        self.delivered(1)


class DecisionTopicSink(_TopicSink):
    """Every decision published, keyed ``scope:key`` so each key's decisions stay in order (the audit log)."""

    name = "decisions"

    async def write(self, items: Sequence[Decision]) -> bool:
        for d in items:
            await self.send(encode_decision(d), key=f"{d.scope}:{d.key}".encode())
            metrics.DECISIONS.labels(d.scope, d.action, d.reason).inc()
        return True


class DeadLetterSink(_TopicSink):
    """Input the worker could not use, with its reason and where it was read (``requests.dlq``)."""

    name = "dlq"

    async def write(self, items: Sequence[DeadLetter]) -> bool:
        for letter in items:
            await self.send(encode_dead_letter(letter))
            metrics.DLQ.labels(letter.reason).inc()
        return True
