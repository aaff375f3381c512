"""A slow Redis (200 ms added to every round trip): consumption keeps pace, decisions still land.

The worker talks to a private redis-server through a latency proxy (tests/stream/latency_proxy.py)
that forwards every request 200 ms after it arrived. Counted, not assumed: events produced vs
processed every few seconds, decisions on the topic vs keys in Redis, and the worker's metrics.
"""

from __future__ import annotations

import time

import orjson
import pytest
import redis
from kafka import KafkaProducer
from latency_proxy import LatencyProxy

from lab.embedded import consume_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DELAY_S = 0.2
RATE = 1000  # events/s offered
LOAD_S = 60.0
MAX_BEHIND_S = 3.0  # at most this much traffic produced and not yet processed, at any sample


def _honest(i: int, now: float) -> dict:
    return {"event_id": f"h{i}", "ts": now, "account_id": f"user_{i % 3000}", "ip": f"172.16.{i % 200}.{i % 250}",
            "input_tokens": 900, "output_tokens": 300, "account_created_ts": now - 9e7,
            "user_agent": "sdk-python/0.42.0"}


def _campaign(k: int, now: float, n: int = 12) -> list[dict]:
    # young accounts sharing a payment fingerprint from many networks, harvesting long answers
    return [{"event_id": f"c{k}-{i}", "ts": now + i * 0.01, "account_id": f"camp{k}_{i}",
             "ip": f"203.{k % 250}.{i}.7", "input_tokens": 400, "output_tokens": 3000,
             "account_created_ts": now - 3600.0, "payment_fp": f"pay_slow{k}", "user_agent": "sdk-python/0.42.0"}
            for i in range(n)]


def _bucket(text: str, name: str, le: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'{name}_bucket{{le="{le}"}} '):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} bucket {le} not on /metrics")


def test_slow_redis_never_stops_consumption(start_worker, own_redis, broker, record_property):
    own_redis.restart()  # running and empty, whatever an earlier test did to it
    direct = redis.Redis.from_url(own_redis.url, socket_timeout=5)
    with LatencyProxy(own_redis.port, DELAY_S) as proxy:
        slow = redis.Redis(port=proxy.port, socket_timeout=5)
        slow.ping()
        t = time.monotonic()
        slow.ping()
        rtt = time.monotonic() - t
        slow.close()
        assert rtt >= DELAY_S, rtt  # the fault is in place

        w = start_worker(f"redis://127.0.0.1:{proxy.port}/0")
        processed = lambda: w.metric("ratehound_events_total", outcome="processed")  # noqa: E731
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
        sent, campaigns, i, messages = 0, 0, 0, 0
        samples: list[tuple[float, float, float]] = []  # (seconds into the load, events behind, sink_up)
        start = time.monotonic()
        next_sample = start + 5.0
        step = RATE // 10
        while (now_m := time.monotonic()) - start < LOAD_S:
            now = time.time()
            evs = [_honest(i + j, now) for j in range(step)]
            i += step
            if int(now_m - start) // 2 >= campaigns:  # a fresh campaign every 2 s
                evs += _campaign(campaigns, now)
                campaigns += 1
            p.send(w.topics["requests"], value=orjson.dumps(evs))
            p.flush()
            sent += len(evs)
            messages += 1
            if now_m >= next_sample:
                next_sample += 5.0
                samples.append((round(now_m - start), sent - processed(),
                                w.metric("ratehound_sink_up", sink="redis")))
            time.sleep(max(0.0, start + messages * 0.1 - time.monotonic()))
        p.close()

        # consumption kept pace all along: never more than MAX_BEHIND_S of traffic behind
        assert len(samples) >= LOAD_S // 5 - 1
        assert max(s[1] for s in samples) <= MAX_BEHIND_S * RATE, f"(s into load, events behind, sink_up): {samples}"
        assert all(s[2] == 1 for s in samples), samples
        assert wait_until(lambda: processed() == sent, timeout=30), (processed(), sent)
        assert w.metric("ratehound_events_total", outcome="rejected") == 0

        # every throttle/block on the decisions topic is readable in Redis, and nothing else is there
        wait_until(lambda: w.metric("ratehound_sink_queued", sink="redis") == 0, timeout=15)
        published = w.metric("ratehound_sink_writes_total", sink="redis", result="ok")
        decisions = [orjson.loads(r.value) for r in
                     consume_all(broker.bootstrap, w.topics["decisions"], timeout=20, min_messages=int(published))]
        enforced = {f"rh:d:{d['scope']}:{d['key']}" for d in decisions if d["action"] in ("throttle", "block")}
        assert len(enforced) >= campaigns * 3, (len(enforced), campaigns)  # most campaigns were caught
        assert wait_until(lambda: {k.decode() for k in direct.scan_iter("rh:d:*", count=1000)} == enforced,
                          timeout=20)

        # and the metrics say so: sink up, nothing queued or failed, every decision >= 200 ms to Redis
        text = w.metrics_text()
        assert w.metric("ratehound_sink_up", sink="redis") == 1
        assert w.metric("ratehound_sink_queued", sink="redis") == 0
        assert w.metric("ratehound_sink_writes_total", sink="redis", result="error") == 0
        assert w.metric("ratehound_sink_writes_total", sink="redis", result="ok") == len(decisions)
        name = "ratehound_event_to_decision_seconds"
        n = w.metric(f"{name}_count")
        assert n == len(decisions)
        assert _bucket(text, name, "0.2") == 0  # none faster than one round trip
        p50 = next(le for le in ("0.3", "0.5", "0.75", "1.0", "2.0", "5.0", "+Inf") if _bucket(text, name, le) >= n / 2)
        record_property("decisions", len(decisions))
        record_property("max_events_behind", max(s[1] for s in samples))
        record_property("event_to_decision_p50_le_s", p50)
        print(f"\nslow redis ({DELAY_S * 1000:.0f} ms/round trip, ping {rtt:.3f} s): {sent} events at {RATE}/s, "
              f"at most {max(s[1] for s in samples):.0f} events behind, {len(decisions)} "
              f"decisions all in Redis, event->decision p50 <= {p50} s, proxy forwarded {proxy.chunks_delayed} "
              f"requests on {proxy.connections} connections")
        # Stopped through the slow link still (a SIGTERM right after a batch is tested in test_worker).
        t = time.monotonic()
        w.stop()
        record_property("stop_s", round(time.monotonic() - t, 1))
        assert w.proc.returncode == 0, w.proc.returncode
    direct.close()
