"""A worker's state and progress as Prometheus gauges: tracked and evicted keys, consumer and event-time lag."""

from __future__ import annotations

import time
from typing import Any

from stream import metrics
from stream.ingest import RequestReader
from stream.settings import Topics
from stream.state import AccountPartitions, GroupPartitions


class WorkerGauges:
    """Sampled on timers, never per event."""

    def __init__(self, topics: Topics):
        self.topics = topics
        self._evicted_seen: dict[str, int] = {}

    def state(self, accounts: AccountPartitions, groups: GroupPartitions) -> None:
        """``ratehound_tracked_keys`` and ``ratehound_evicted_keys_total``, by kind."""
        metrics.TRACKED.labels("account").set(sum(len(st.accounts) for st in accounts.stages.values()))
        metrics.TRACKED.labels("network").set(sum(len(st.networks) for st in groups.stages.values()))
        metrics.TRACKED.labels("cluster").set(sum(len(st.clusters) for st in groups.stages.values()))
        counts = {
            "account": sum(st.accounts.evicted for st in accounts.stages.values()),
            "network": sum(st.networks.evicted for st in groups.stages.values()),
            "cluster": sum(st.clusters.evicted for st in groups.stages.values()),
        }
        for kind, n in counts.items():
            new = n - self._evicted_seen.get(kind, 0)
            if new > 0:
                metrics.EVICTED.labels(kind).inc(new)
            self._evicted_seen[kind] = n

    async def lag(self, accounts: AccountPartitions, consumer: Any, reader: RequestReader) -> None:
        """``ratehound_event_time_lag_seconds`` and ``ratehound_consumer_lag_messages`` per input topic."""
        stages = list(accounts.stages.values())
        newest = max((st.now for st in stages if st.now > 0), default=None)
        # Grows while a stalled worker sees nothing new; 0 when it holds no partition.
        metrics.LAG_SECONDS.set(max(0.0, time.time() - newest) if newest is not None else 0.0)
        t = self.topics
        lag: dict[str, int] = {name: 0 for name in (t.requests, t.by_account, t.by_group)}
        try:
            for tp in consumer.assignment():
                if tp.topic not in lag:  # changelogs and Faust's own topics
                    continue
                hw = consumer.highwater(tp)
                pos = await consumer.position(tp)
                if hw is not None and pos is not None:
                    lag[tp.topic] += max(0, hw - pos)
            lag[t.requests] = await reader.lag()
        except Exception:  # noqa: BLE001 - lag is best effort during rebalances
            return
        for topic, v in lag.items():
            metrics.LAG.labels(topic).set(v)
