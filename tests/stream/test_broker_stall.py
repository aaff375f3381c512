"""The broker stalls (SIGSTOP) for 30 s and for 90 s: the worker reconnects by itself and loses nothing."""

from __future__ import annotations

import time

import orjson
import pytest
from kafka import KafkaProducer

from lab.embedded import EmbeddedBroker, consume_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _events(start: int, n: int, now: float) -> list[dict]:
    return [{"event_id": f"s{i}", "ts": now + i * 0.001, "account_id": f"acct_{i % 50}", "ip": "198.51.100.4",
             "account_created_ts": now - 9e7} for i in range(start, start + n)]


@pytest.mark.parametrize("stall_s", [30, 90])
def test_broker_stall_loses_nothing(start_worker, redis_url, stall_s, record_property):
    with EmbeddedBroker() as broker:  # its own broker: the stall must not reach other tests
        w = start_worker(redis_url, broker_url=broker.url)
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
        processed = lambda: w.metric("ratehound_events_total", outcome="processed")  # noqa: E731
        sent = 0

        def send(n: int) -> None:  # one array per send, flushed on its own: one record per batch
            nonlocal sent
            p.send(w.topics["requests"], value=orjson.dumps(_events(sent, n, time.time())))
            p.flush()
            sent += n

        # a canary: the broker and the worker work before the fault
        send(100)
        assert wait_until(lambda: processed() == 100)
        joins_before = w.log_path.read_text(errors="replace").count("Joined group")

        broker.pause()
        time.sleep(stall_s)
        broker.resume()
        resumed = time.monotonic()

        # Probes until one is processed within 1 s of being sent: the worker is caught up (lag < 1 s).
        recovered_s = None
        while recovered_s is None and time.monotonic() - resumed < 120:
            t = time.monotonic()
            send(20)
            if wait_until(lambda: processed() >= sent, timeout=1.0, every=0.05):
                recovered_s = time.monotonic() - resumed
            elif time.monotonic() - t < 1.0:
                time.sleep(0.2)
        assert recovered_s is not None, f"lag not under 1 s within 120 s of the resume ({processed()}/{sent})"
        record_property("recovery_s", round(recovered_s, 1))
        print(f"\nbroker stalled {stall_s} s: caught up (probe processed within 1 s) {recovered_s:.1f} s "
              "after SIGCONT")

        for _ in range(5):
            send(100)
        p.close()
        assert wait_until(lambda: processed() == sent, timeout=60), (processed(), sent)
        assert w.proc.poll() is None
        # reconnected without a rejoin loop: at most one new group join after the stall
        joins = w.log_path.read_text(errors="replace").count("Joined group")
        record_property("joins_after_stall", joins - joins_before)
        assert joins - joins_before <= 1, joins
        assert not consume_all(broker.bootstrap, w.topics["dlq"], timeout=3)
        w.stop()  # before its broker goes: a worker without one takes 20 s to give up
