"""The Faust app a worker runs on: how it talks to Kafka, what its web server shows, and the ingest
reader that starts with it."""

from __future__ import annotations

import faust

from stream.ingest import RequestReader
from stream.kafka_tuning import cap_fetch_wait
from stream.settings import Settings


class WorkerApp(faust.App):
    """The Faust app, which also starts the ingest reader as it starts itself.

    Faust runs tasks only once its tables are recovered, that is after its own consumer group has
    joined; the reader's group joining only then made a restarted worker wait for two joins, one
    after the other (each holds for the rebalance timeout on the embedded broker). Started here,
    both join at once; the ingest task reads once the app is ready."""

    reader: RequestReader | None = None

    async def on_start(self) -> None:
        await super().on_start()
        if self.reader is not None:
            self.reader.start_soon()

    async def on_shutdown(self) -> None:
        # After the tasks are cancelled (on_stop would pull the consumer from under the ingest task).
        if self.reader is not None:
            await self.reader.stop()
        await super().on_shutdown()


def build_app(settings: Settings) -> WorkerApp:
    """The app for one worker (its topics, tables and agents are declared by :class:`stream.app.Worker`)."""
    cap_fetch_wait(settings.fetch_max_wait_ms)
    return WorkerApp(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=settings.broker_credentials,
        store="memory://",
        datadir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_max_request_size=8 * 1024 * 1024,
        table_standby_replicas=0,
        producer_acks=-1,
        broker_commit_every=1000,
        broker_commit_interval=settings.commit_interval_s,
        stream_buffer_maxsize=max(4096, settings.batch_size * 2),
        consumer_auto_offset_reset="earliest",
        # Only /metrics and /healthz: Faust's own pages would show table contents (account ids).
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        # Faust would wait at shutdown and at every revocation for all input to be acked, but the
        # accounts agent acks only what a snapshot holds: unacked input is simply read again by
        # the next owner, and the snapshot's offsets tell it what to skip.
        stream_wait_empty=False,
        # A JoinGroup waits up to this long for other members: tansu always waits it out.
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.rebalance_timeout_s / 3),
    )
