"""The gateway's request topic, read in batches by a plain consumer beside the Faust agents.

Faust hands each Kafka message to an agent through its own machinery (an event,
a queue, sensors, acknowledgement tracking): about 100 µs a message here, which
caps one-event-per-message input at some 6,000 events/s however little the
agent does with it. Ingest is stateless (decode, validate, re-key by account),
so it needs none of that: this reader fetches whole batches with aiokafka,
in its own consumer group (``<app id>-ingest``), and commits a batch's offsets
only after what the batch produced has been delivered. A batch read twice
(a crash before its commit) is harmless: each re-keyed group of events carries
its source partition and offset, and the account stage skips what it applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream.settings import Settings

log = logging.getLogger(__name__)


class RequestReader:
    """Batches of request records, from the partitions of ``requests`` this worker is assigned."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None
        self._starting: asyncio.Future[None] | None = None

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-ingest"

    def start_soon(self) -> None:
        """Begin connecting and joining the group, in the background."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())

    async def start(self) -> None:
        """Connected and in the group (started here unless ``start_soon`` began it); on failure the
        next call tries again."""
        self.start_soon()
        assert self._starting is not None
        try:
            await asyncio.shield(self._starting)
        except KafkaError:
            self._starting = None
            raise

    async def _start(self) -> None:
        s = self.settings
        session_ms = int(s.rebalance_timeout_s * 1000)
        consumer = AIOKafkaConsumer(
            s.topics.requests,
            bootstrap_servers=s.bootstrap,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The embedded broker holds an empty fetch for the whole wait (see kafka_tuning).
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=2 * 1024 * 1024,
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=session_ms,
            heartbeat_interval_ms=int(min(3.0, s.rebalance_timeout_s / 3) * 1000),
            **s.kafka_client_config,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self.consumer = consumer

    async def stop(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        self._starting = None
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()

    async def batches(self) -> AsyncIterator[list[Any]]:
        """Whatever has been fetched, up to ``batch_size`` records at a time, as soon as there is any
        (once started: here, unless ``start_soon`` began it)."""
        while True:
            try:
                await self.start()
                break
            except KafkaError as exc:
                log.error("joining %s for %s failed, trying again in 1 s: %r", self.group_id,
                          self.settings.topics.requests, exc)
                await asyncio.sleep(1.0)
        consumer = self.consumer
        assert consumer is not None
        limit = self.settings.batch_size
        wait_ms = max(1, int(self.settings.batch_within_s * 1000))
        while True:
            try:
                got = await consumer.getmany(timeout_ms=wait_ms, max_records=limit)
            except KafkaError as exc:
                # aiokafka retries what it can by itself (a broker away, a rebalance); what reaches
                # here (an authorization failure, say) is reported and tried again, never the end of ingest.
                log.error("reading %s failed, trying again in 1 s: %r", self.settings.topics.requests, exc)
                await asyncio.sleep(1.0)
                continue
            records = [r for part in got.values() for r in part]
            if records:
                yield records

    async def commit(self, records: list[Any]) -> bool:
        """Mark ``records`` read. False (and logged) when the group has moved on: the next owner
        reads them again, which the offsets they carry downstream make harmless."""
        if self.consumer is None or not records:
            return False
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            if r.offset + 1 > offsets.get(tp, -1):
                offsets[tp] = r.offset + 1
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("ingest commit of %d partitions failed, they will be read again: %r", len(offsets), exc)
            return False
        return True

    def assigned(self) -> list[int]:
        """The partitions of ``requests`` this worker reads now (none until its group has joined)."""
        if self.consumer is None:
            return []
        return sorted(tp.partition for tp in self.consumer.assignment())

    async def lag(self) -> int:
        """Messages on ``requests`` not yet read by this worker, over its assigned partitions."""
        consumer = self.consumer
        if consumer is None:
            return 0
        total = 0
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            pos = await consumer.position(tp)
            if hw is not None and pos is not None:
                total += max(0, hw - pos)
        return total
