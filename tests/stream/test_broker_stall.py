"""The broker stalls (SIGSTOP) for 30 s: the worker reconnects by itself and loses nothing."""

from __future__ import annotations

import time

import orjson
import pytest
from kafka import KafkaProducer

from stream.embedded import EmbeddedBroker, consume_all, wait_until
from stream.settings import Settings, Topics
from stream.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _events(start: int, n: int, now: float) -> list[dict]:
    return [{"event_id": f"s{i}", "ts": now + i * 0.001, "account_id": f"acct_{i % 50}", "ip": "198.51.100.4",
             "account_created_ts": now - 9e7} for i in range(start, start + n)]


def test_broker_stall_of_30_s_loses_nothing(start_worker, redis_url):
    with EmbeddedBroker() as broker:  # its own broker: the stall must not reach other tests
        w = start_worker(redis_url, broker_url=broker.url)
        ensure_topics(Settings(kafka_broker=broker.url, app_id=w.app_id, partitions=w.partitions,
                               topics=Topics(**w.topics)))
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
        # a canary: the broker and the worker work before the fault
        p.send(w.topics["requests"], value=orjson.dumps(_events(0, 100, time.time())))
        p.flush()
        assert wait_until(lambda: w.metric("ratehound_events_total", outcome="processed") == 100)

        broker.pause()
        time.sleep(30)
        broker.resume()

        for k in range(5):  # one array per send, each flushed on its own
            p.send(w.topics["requests"], value=orjson.dumps(_events(100 + k * 100, 100, time.time())))
            p.flush()
        p.close()
        assert wait_until(lambda: w.metric("ratehound_events_total", outcome="processed") == 600, timeout=120)
        assert w.proc.poll() is None
        # reconnected without a rejoin loop: few group joins in the log
        joins = w.log_path.read_text(errors="replace").count("Joined group")
        assert joins <= 4, joins
        assert not consume_all(broker.bootstrap, w.topics["dlq"], timeout=3)
