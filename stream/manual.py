"""People's decisions (``ratehound decision``), read back from the decisions topic by every worker.

A manual decision is written to Redis by the command itself, once. If Redis then restarted
empty before it expired, nobody would write it again: the workers re-assert only what they
hold. So each worker reads the decisions topic, every partition, from its beginning and with
no consumer group (each worker re-asserts every decision in force, whichever partitions it
holds), keeps the manual decisions that have not expired, and hands each to the Redis sink
(:meth:`~stream.sinks.redis.RedisDecisionSink.hold`), which re-asserts them as pins.

The detector's decisions on the topic are skipped before decoding (their reason is never
``manual:``); at start a worker reads the whole retained topic once, in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from detectors.policy import Decision
from stream.settings import Settings

log = logging.getLogger(__name__)
_MARK = b'"reason":"manual:'  # as encode_decision writes it
_decode = msgspec.json.Decoder(Decision).decode


def manual_decision(value: bytes | None) -> Decision | None:
    """The decision on a record of the decisions topic, if a person took it.

    >>> from detectors.policy import encode_decision
    >>> d = Decision(ts=1.0, scope="account", key="a", action="allow", ttl_s=60.0, reason="manual:fp", score=0.0,
    ...              evidence={}, expires_at=61.0)
    >>> manual_decision(encode_decision(d)) == d
    True
    >>> manual_decision(encode_decision(msgspec.structs.replace(d, reason="account_burst"))) is None
    True
    """
    if not value or _MARK not in value:
        return None
    try:
        d = _decode(value)
    except msgspec.DecodeError:
        return None
    return d if d.reason.startswith("manual:") else None


class ManualDecisions:
    """Reads the decisions topic for manual decisions and hands each one to ``hold`` as it comes."""

    def __init__(self, settings: Settings, hold: Callable[[Decision], None]):
        self.settings = settings
        self.hold = hold
        self.consumer: AIOKafkaConsumer | None = None
        self.read = 0  # manual decisions handed on

    async def run(self) -> None:
        """Read until cancelled; a broker away is reported and tried again."""
        while True:
            try:
                await self._follow()
            except KafkaError as exc:
                log.warning("reading manual decisions from %s failed, trying again in 5 s: %r",
                            self.settings.topics.decisions, exc)
            finally:
                await self.stop()
            await asyncio.sleep(5.0)

    async def _follow(self) -> None:
        s = self.settings
        topic = s.topics.decisions
        self.consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap, client_id=f"{s.app_id}-manual", group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=500, **s.kafka_client_config)
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:  # the topic's metadata is not there yet
            await asyncio.sleep(1.0)
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                for rec in records:
                    d = manual_decision(rec.value)
                    if d is not None:
                        self.read += 1
                        self.hold(d)

    async def stop(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            await consumer.stop()
