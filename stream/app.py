"""A worker: its topics, table, agents and timers, wired to detectors/ and the sinks.

    requests (any key, objects or arrays)
      -> ingest: decode, validate, DLQ the bad ones, re-key by account
    requests.by_account (partitioned by account)
      -> accounts: AccountStage per partition, account decisions, observations
    requests.by_group (an observation goes to every partition owning one of its group keys)
      -> groups: GroupStage per partition (networks, ASNs, clusters), group decisions
    decisions -> the sinks (stream/sinks/): Redis, the decisions topic; bad input -> the DLQ
    decisions topic -> manual decisions, re-asserted with the detector's (stream/manual.py)

Every batch is handled inside try/except: Faust acks a message whose agent raised
and restarts the agent, which would skip it silently, so a failure sends the
batch's events to the DLQ with reason ``processing_error`` instead.

About 400 lines: the per-batch work of the three stages kept side by side. The group routing is
``detectors.routing``'s, the one replay and the tests use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import defaultdict
from typing import Any

from prometheus_client import generate_latest

from detectors.config import ConfigError, DetectorConfig
from detectors.events import Event, EventDecoder, Reject, encode_event
from detectors.observation import Observation
from detectors.pipeline import publish
from detectors.policy import Decision, DecisionLedger, Watermark
from detectors.routing import GroupItem, GroupRouter
from stream import metrics
from stream.faust_app import build_app
from stream.gauges import WorkerGauges
from stream.ingest import RequestReader
from stream.manual import ManualDecisions
from stream.records import (
    PartitionMemo,
    SourcedEvents,
    dead_letters,
    decode_events,
    decode_observations,
    encode_events,
    encode_observations,
)
from stream.reload import ConfigWatcher, load_versioned
from stream.settings import Settings
from stream.sinks.redis import RedisDecisionSink
from stream.sinks.topics import DeadLetterSink, DecisionTopicSink
from stream.state import AccountPartitions, GroupPartitions, write_complete

log = logging.getLogger(__name__)


def _event_time(stop: tuple[int, GroupItem]) -> float:
    return stop[1][0].ts


class Worker:
    """Everything one worker process holds: the Faust app, detector stages and sinks."""

    def __init__(self, settings: Settings, cfg: DetectorConfig):
        self.settings = settings
        self.cfg = cfg
        n = settings.partitions
        self.app = build_app(settings)
        app = self.app
        t = settings.topics
        dlq_topic = app.topic(t.dlq, value_serializer="raw", key_serializer="raw", partitions=n, internal=True)
        self.by_account = app.topic(t.by_account, value_serializer="raw", key_serializer="raw", partitions=n,
                                    internal=True)
        self.by_group = app.topic(t.by_group, value_serializer="raw", key_serializer="raw", partitions=n,
                                  internal=True)
        decisions_topic = app.topic(t.decisions, value_serializer="raw", key_serializer="raw", partitions=n,
                                    internal=True)
        self.account_table = app.Table("account_state", partitions=n, key_type=bytes, value_type=bytes)
        self.group_table = app.Table("group_state", partitions=n, key_type=bytes, value_type=bytes)
        self.decoder = EventDecoder(max_future_s=cfg.event_time.max_future_s,
                                    ip_cache_size=cfg.network.ip_cache_size)
        wm = Watermark()  # the latest event time any stage of this worker has read: every decision's ts
        self.accounts = AccountPartitions(cfg, table=self.account_table, watermark=wm)
        self.groups = GroupPartitions(cfg, table=self.group_table, watermark=wm)
        self.reader = self.app.reader = RequestReader(settings)
        self.redis = RedisDecisionSink(settings.redis_url, prefix=settings.redis_prefix)
        self.decision_log = DecisionTopicSink(decisions_topic)
        self.dead_letters = DeadLetterSink(dlq_topic)
        self.manual = ManualDecisions(settings, self.redis.hold)
        self.published = DecisionLedger(cfg.policy.refresh_before_expiry_share)
        self.watcher = ConfigWatcher(settings.config_path)
        self.gauges = WorkerGauges(settings.topics)
        self._partition = PartitionMemo(n)
        self.router = GroupRouter(cfg.cluster, n, self._partition.__getitem__)
        self._next_snapshot = 0.0
        self._in_batch = False  # the accounts agent is inside a batch: no snapshot now, it would be torn
        self._unacked: dict[int, list[Any]] = defaultdict(list)  # by-account input not yet in a snapshot
        self._unacked_groups: dict[int, list[Any]] = defaultdict(list)  # by-group input, likewise
        # Tests only: the worker kills itself once the first chunk of a write of several is out (what
        # a crash between two chunks leaves).
        self._kill_mid_write = os.environ.get("RATEHOUND_TEST_KILL_MID_SNAPSHOT") == "1"
        self._dying = False
        metrics.CONFIG.labels(cfg.version).set(1)
        self._wire()

    # -- wiring -------------------------------------------------------------------------------------------

    def _wire(self) -> None:
        app, s = self.app, self.settings
        batch, within = s.batch_size, s.batch_within_s

        @app.task
        async def ingest() -> None:
            # Not an agent: see stream/ingest.py. A batch is committed once what it produced is delivered.
            # The reader began joining its group with the app (WorkerApp), and stops with it.
            reader = self.reader
            async for records in reader.batches():
                await self._guard(self._ingest, records)
                await app.producer.flush()
                await reader.commit(records)

        @app.agent(self.by_account, name="accounts")
        async def accounts(stream: Any) -> None:
            async for events in stream.take_events(batch, within=within):
                self._in_batch = True
                try:
                    await self._guard(self._accounts, events)
                finally:
                    self._in_batch = False

        @app.agent(self.by_group, name="groups")
        async def groups(stream: Any) -> None:
            async for events in stream.take_events(batch, within=within):
                await self._guard(self._groups, events)

        @app.task
        async def manual_decisions() -> None:
            await self.manual.run()

        @app.timer(interval=min(1.0, s.snapshot_every_s))
        async def idle_snapshot() -> None:
            # Batches snapshot as they end; this covers a partition that went quiet after its last one.
            if not self._in_batch and time.monotonic() >= self._next_snapshot:
                self._snapshot()

        @app.timer(interval=5.0)
        async def gauges() -> None:
            self.gauges.state(self.accounts, self.groups)
            self.redis.count_active()

        @app.timer(interval=5.0)
        async def housekeeping() -> None:
            await self.redis.flush()
            await self.redis.heartbeat(self.cfg.version)

        @app.timer(interval=1.0)
        async def lag() -> None:
            await self.gauges.lag(self.accounts, self.app.consumer, self.reader)

        @app.timer(interval=2.0)
        async def reload_config() -> None:
            if self.watcher.changed():
                self.reload()

        @app.timer(interval=15.0)
        async def reassert() -> None:
            await self.redis.reassert()
            self.published.expire(time.time())

        @app.page("/metrics")
        async def metrics_page(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(metrics.REGISTRY), content_type="text/plain; version=0.0.4")

        @app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            # "reading": what each consumer group has assigned to this worker; a worker that has not
            # joined yet is up but not consuming (on tansu a first join takes the rebalance timeout).
            return web.json({"redis": self.redis.healthy, "config_version": self.cfg.version,
                             "partitions": sorted(self.accounts.stages),
                             "reading": {"requests": self.reader.assigned(),
                                         "by_account": self._assigned(s.topics.by_account),
                                         "by_group": sorted(self._held_group_partitions())}})

        # mode types a handler with a required keyword `signal` whose type mypy cannot match: ignored.
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def on_revoked(app_: Any, revoked: set, **kwargs: Any) -> None:
            gone = {tp.partition for tp in revoked if tp.topic == s.topics.by_account}
            gone_groups = {tp.partition for tp in revoked if tp.topic == s.topics.by_group}
            if not self._in_batch:
                self._snapshot(gone, gone_groups)  # hand the partitions over with everything applied so far
            for p in gone:  # mid-batch, a snapshot could be torn: the next owner re-reads what is unacked
                self._unacked.pop(p, None)
            for p in gone_groups:
                self._unacked_groups.pop(p, None)
            self.accounts.drop(gone)
            self.groups.drop(gone_groups)

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def on_shutdown(app_: Any, **kwargs: Any) -> None:
            if not self._in_batch:
                self._snapshot()  # a restart resumes from here; Faust flushes the producer next

    def reload(self) -> bool:
        """Re-read the thresholds file; a bad one is reported and the last good config stays in force."""
        try:
            new = load_versioned(self.settings.config_path)
        except (ConfigError, OSError) as exc:
            metrics.CONFIG_RELOADS.labels("error").inc()
            log.error("config reload rejected, keeping version %s: %s", self.cfg.version, exc)
            return False
        if new == self.cfg:
            return True
        old, self.cfg = self.cfg, new
        self.accounts.reconfigure(new)
        self.groups.reconfigure(new)
        self.published.refresh_share = new.policy.refresh_before_expiry_share
        self.decoder.max_future_s = new.event_time.max_future_s
        metrics.CONFIG.labels(old.version).set(0)
        metrics.CONFIG.labels(new.version).set(1)
        metrics.CONFIG_RELOADS.labels("ok").inc()
        log.warning("config reloaded: version %s -> %s", old.version, new.version)
        return True

    # -- per-batch work -----------------------------------------------------------------------------------

    async def _guard(self, handler: Any, events: list[Any]) -> None:
        """Run one batch; on any failure its input goes to the DLQ instead of being silently skipped.

        ``events``: Faust events, or plain consumer records (the ingest reader's)."""
        try:
            await handler(events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the worker must outlive any bad batch
            log.exception("batch of %d messages failed; sending it to the DLQ", len(events))
            for ev in events:
                msg = getattr(ev, "message", ev)
                raw = msg.value if isinstance(msg.value, bytes) else repr(msg.value).encode()
                await self._send_dlq([Reject("processing_error", repr(exc)[:300], raw)], msg.topic,
                                     msg.partition, msg.offset)

    async def _ingest(self, records: list[Any]) -> None:
        now = time.time()
        per_partition: dict[int, list] = defaultdict(list)
        ok = bad = 0
        for msg in records:
            payload = msg.value if isinstance(msg.value, bytes) else b""
            good, rejects = self.decoder.decode(payload, now=now)
            if rejects:
                bad += len(rejects)
                await self._send_dlq(rejects, msg.topic, msg.partition, msg.offset)
            split: dict[int, list[Event]] = defaultdict(list)
            part = self._partition
            for e in good:
                split[part[e.account_id]].append(e)
            for p, evs in split.items():
                per_partition[p].append(SourcedEvents(msg.partition, msg.offset, evs))
            ok += len(good)
        step = self.settings.max_message_events
        for p, groups in per_partition.items():
            chunk: list[SourcedEvents] = []
            size = 0
            for g in groups:  # bounded messages, whatever the batch size; an input message is never split
                chunk.append(g)
                size += len(g.events)
                if size >= step:
                    await self.by_account.send(value=encode_events(chunk), partition=p)
                    chunk, size = [], 0
            if chunk:
                await self.by_account.send(value=encode_events(chunk), partition=p)
        metrics.EVENTS.labels("rejected").inc(bad)
        metrics.BATCH.observe(ok)

    async def _accounts(self, events: list[Any]) -> None:
        by_part: dict[int, list] = defaultdict(list)
        reread = 0
        for ev in events:
            msg = ev.message
            p = msg.partition
            self.accounts.stage(p)  # a partition taken over restores its snapshot before its first event
            for g in decode_events(msg.value):
                if self.accounts.apply_source(p, g.partition, g.offset):
                    by_part[p].extend(g.events)
                else:
                    reread += 1  # read again after a crash: its effects came back with the snapshot
            # Committed only once a snapshot holds its effects (Faust flushes the snapshot first).
            msg.incref()
            self._unacked[p].append(msg)
        if reread:
            metrics.REREAD.inc(reread)
        routed: list[tuple[int, GroupItem]] = []  # in event order, each observation's first stops
        fault = self.settings.fault_account
        for p, evs in by_part.items():
            stage = self.accounts.stage(p)
            dup_before = stage.duplicates
            obs: list[Observation] = []
            decisions: list[Decision] = []
            rejects: list[Reject] = []
            one = stage.process_one
            for e in evs:
                # One event at a time in its own try: a detector failure costs that event (to the
                # DLQ with its reason), never its batch, and is never silently acknowledged.
                try:
                    if fault is not None and e.account_id == fault:
                        raise RuntimeError("injected fault (RATEHOUND_FAULT_ACCOUNT)")
                    o = one(e, decisions, rejects)
                except Exception as exc:  # noqa: BLE001
                    rejects.append(Reject("processing_error", repr(exc)[:300], encode_event(e)))
                    continue
                if o is not None:
                    obs.append(o)
            metrics.EVENTS.labels("duplicate").inc(stage.duplicates - dup_before)
            metrics.EVENTS.labels("processed").inc(len(obs))
            if rejects:
                metrics.EVENTS.labels("rejected").inc(len(rejects))
                await self._send_dlq(rejects, self.settings.topics.by_account, p, -1)
            await self._publish(decisions)
            first_stops = self.router.first_stops
            for o in obs:
                for tp, item in first_stops(o):
                    routed.append((tp, item))
        # Account partitions were taken one after another: the group stages take the batch's observations
        # in event time, as one process would (a cluster's later members judged after its earlier ones).
        routed.sort(key=_event_time)
        await self._visit_groups(routed)
        if time.monotonic() >= self._next_snapshot:
            self._snapshot()
        metrics.HEARTBEAT.set(time.time())

    def _snapshot(self, partitions: set[int] | None = None, group_partitions: set[int] | None = None) -> None:
        """Between batches only, so a snapshot holds exactly the input up to its recorded offset. Account
        stages first, then group stages (they hold what the account stages handed on); then their input
        is acknowledged. ``partitions``, ``group_partitions``: only these (both None: all)."""
        if self._dying:
            return
        only = partitions is not None or group_partitions is not None
        try:
            n = self.accounts.snapshot(self._put(self.account_table), partitions if only else None)
            g = self.groups.snapshot(self._put(self.group_table), (group_partitions or set()) if only else None)
        except Exception:  # noqa: BLE001 - the worker keeps its state and goes on; nothing is acknowledged
            metrics.SNAPSHOT_ERRORS.inc()
            log.exception("state snapshot failed; its input stays unacknowledged")
            self._next_snapshot = time.monotonic() + self.settings.snapshot_every_s
            return
        if self._dying:
            return  # never acknowledge what a torn write holds
        self._next_snapshot = time.monotonic() + self.settings.snapshot_every_s
        consumer = self.app.consumer
        for unacked, ps in ((self._unacked, partitions), (self._unacked_groups, group_partitions)):
            for p in list(unacked) if not only else (ps or ()):
                for msg in unacked.pop(p, ()):
                    try:
                        msg.ack(consumer)
                    except Exception:  # noqa: BLE001 - a partition revoked under us: the next owner re-reads it
                        log.debug("ack after revocation failed", exc_info=True)
        if n or g:
            log.debug("snapshot: %d accounts, %d group entries", n, g)

    def _put(self, table: Any) -> Any:
        def put(p: int, k: bytes, v: bytes | None) -> None:
            if self._dying:
                return
            sent = self._table_put(table, p, k, v)
            if self._kill_mid_write and v is not None and not write_complete(v):
                self._dying = True
                asyncio.ensure_future(self._die(sent))
        return put

    async def _die(self, sent: Any) -> None:
        await sent  # the chunk is on the broker; the rest of its write never will be
        log.warning("RATEHOUND_TEST_KILL_MID_SNAPSHOT: killed between two chunks of a snapshot write")
        os.kill(os.getpid(), signal.SIGKILL)

    async def _groups(self, events: list[Any]) -> None:
        work: list[tuple[int, GroupItem]] = []
        reread = 0
        groups = self.groups
        for ev in events:
            msg = ev.message
            p = msg.partition
            groups.stage(p)  # a partition taken over restores its snapshot before its first observation
            if groups.apply_source(p, p, msg.offset):
                work.extend((p, item) for item in decode_observations(msg.value))
            else:
                reread += 1  # read again after a crash: its effects came back with the snapshot
            msg.incref()  # committed only once a snapshot holds its effects, as by-account input
            self._unacked_groups[p].append(msg)
        if reread:
            metrics.REREAD.inc(reread)
        await self._visit_groups(work)

    async def _visit_groups(self, work: list[tuple[int, GroupItem]]) -> None:
        """Observations for group stages, by by_group partition. Those for partitions this worker holds
        are observed here at once, and so is what they hand on while it stays here; the rest go through
        by_group to the partition's owner. (A round trip through the broker to this same worker would
        only cost time.)"""
        held = self._held_group_partitions()
        stage = self.groups.stage
        decisions: list[Decision] = []
        away, visits = self.router.visit_held(work, lambda p: stage(p) if p in held else None, decisions,
                                              on_error=self._group_error)
        metrics.GROUP_OBSERVATIONS.inc(visits)
        await self._publish(decisions)
        await self._send_groups(away)

    @staticmethod
    def _group_error(exc: Exception) -> None:
        metrics.GROUP_ERRORS.inc()
        log.error("group stage failed on one observation", exc_info=exc)

    def _assigned(self, topic: str) -> list[int]:
        try:
            return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic)
        except Exception:  # noqa: BLE001 - no consumer yet, or mid-rebalance: none held
            return []

    def _held_group_partitions(self) -> set[int]:
        return set(self._assigned(self.settings.topics.by_group))

    async def _send_groups(self, routed: dict[int, list[GroupItem]]) -> None:
        step = self.settings.max_message_events
        for tp, items in routed.items():
            for i in range(0, len(items), step):
                await self.by_group.send(value=encode_observations(items[i:i + step]), partition=tp)

    # -- effects ------------------------------------------------------------------------------------------

    async def _publish(self, decisions: list[Decision]) -> None:
        # Stages of one worker decide independently (account rules, each group partition); publish
        # only what adds to what this worker already has in force.
        decisions = publish(self.published, decisions)
        if decisions:
            await self.decision_log.write(decisions)
            await self.redis.write(decisions)

    async def _send_dlq(self, rejects: list[Reject], topic: str, partition: int, offset: int) -> None:
        await self.dead_letters.write(dead_letters(rejects, topic, partition, offset))

    @staticmethod
    def _table_put(table: Any, partition: int, k: bytes, value: bytes | None) -> Any:
        """Returns the changelog message's future (done once the broker has it)."""
        if value is None:
            table.data.pop(k, None)
        else:
            table.data[k] = value
        return table.send_changelog(partition, k, value)
