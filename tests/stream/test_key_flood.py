"""A key-cardinality flood through a live worker: memory, series and Redis keys stay bounded.

300,000 events, each from a new account on a new IPv6 /48 (300,000 distinct accounts, addresses
and networks), sent as JSON arrays of 1,000 to a worker whose caps are compressed to 5,000
accounts and 5,000 networks per partition, so eviction runs all along. Counted, not assumed:
VmRSS of the worker process, the tracked-keys gauges and eviction counters against the keys
sent, the number of series on /metrics, and the keys in Redis against the decisions made.
"""

from __future__ import annotations

import os
import time

import orjson
import pytest
import redis
from kafka import KafkaProducer

from lab.embedded import EmbeddedBroker, consume_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Distinct accounts, and distinct IPv6 networks. CI floods 300,000 of each (under a minute);
# RATEHOUND_FLOOD_KEYS=1000000 runs the million.
KEYS = int(os.environ.get("RATEHOUND_FLOOD_KEYS", "300000"))
CAP = 5_000  # per partition, for accounts, networks and clusters
SEEN_SLOTS = 8_192  # per partition: the table of keys seen from one account (fills, then overwrites)
PARTITIONS = 2
RATE = 6_000  # events/s offered: about what one worker takes on this 2-core machine
RSS_GROWTH_MB = 25  # allowed between the first and the last quarter of the flood


class RssGrowsWithKeys(AssertionError):
    """The worker's memory grew with the number of distinct keys, caps notwithstanding."""


def _flood(start: int, n: int, now: float) -> list[dict]:
    # 2a00:<hi>:<lo>::/48 is a new network for every i; old accounts, so no cluster keys
    return [{"event_id": f"f{i}", "ts": now, "account_id": f"flood_{i:07d}", "ip": f"2a00:{i >> 16:x}:{i & 0xFFFF:x}::1",
             "account_created_ts": now - 9e7, "input_tokens": 200, "output_tokens": 200} for i in range(start, start + n)]


def _campaign(now: float, n: int = 12) -> list[dict]:
    return [{"event_id": f"c{i}", "ts": now + i * 0.01, "account_id": f"camp_{i}", "ip": f"203.0.{i}.7",
             "input_tokens": 400, "output_tokens": 3000, "account_created_ts": now - 3600.0,
             "payment_fp": "pay_flood", "user_agent": "sdk-python/0.42.0"} for i in range(n)]


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _series(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def test_key_flood_keeps_memory_series_and_redis_bounded(start_worker, redis_url, tmp_path, record_property):
    cfg = tmp_path / "flood.yaml"
    # Every per-key structure has a cap in the thresholds file; small ones here, so the flood meets them.
    cfg.write_text(f"version: flood\naccount:\n  max_accounts: {CAP}\nnetwork:\n  max_networks: {CAP}\n"
                   f"  ip_cache_size: {CAP}\ncluster:\n  max_clusters: {CAP}\n  seen_once_slots: {SEEN_SLOTS}\nevent_time:\n  dedupe_ids: {CAP}\n")
    with EmbeddedBroker() as broker:  # its own: tansu never frees what the flood puts in it
        w = start_worker(redis_url, broker_url=broker.url, config=str(cfg), partitions=PARTITIONS)
        try:
            processed = lambda: w.metric("ratehound_events_total", outcome="processed")  # noqa: E731
            p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks=1, max_request_size=4 << 20)
            r = redis.Redis.from_url(redis_url)

            # a canary that makes decisions: the Redis count below is not vacuous
            camp = _campaign(time.time())
            p.send(w.topics["requests"], value=orjson.dumps(camp))
            p.flush()
            assert wait_until(lambda: r.get(f"rh:d:account:{camp[-1]['account_id']}"), timeout=30)
            base = processed()
            assert base == len(camp)

            samples: list[dict] = []

            def sample() -> None:
                text = w.metrics_text()
                m = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line and not line.startswith("#")}
                samples.append({"done": m['ratehound_events_total{outcome="processed"}'] - base,
                                "rss": _rss_mb(w.proc.pid), "series": _series(text),
                                "accounts": m['ratehound_tracked_keys{kind="account"}'],
                                "networks": m['ratehound_tracked_keys{kind="network"}'],
                                "clusters": m['ratehound_tracked_keys{kind="cluster"}']})

            start = time.monotonic()
            sent = 0
            next_sample = start
            while sent < KEYS:
                p.send(w.topics["requests"], value=orjson.dumps(_flood(sent, 1000, time.time())))
                sent += 1000
                if time.monotonic() >= next_sample:
                    next_sample += 1.0
                    sample()
                time.sleep(max(0.0, start + sent / RATE - time.monotonic()))
            p.flush()
            p.close()
            while processed() - base < KEYS and time.monotonic() - start < 150:
                sample()
                time.sleep(1.0)
            flood_s = time.monotonic() - start
            assert processed() - base == KEYS, (processed() - base, KEYS)

            # the caps hold, and eviction accounts for every key beyond them, exactly (the gauges and
            # counters are set by a timer: wait for one run after the last event)
            accounts = networks = KEYS + len(camp)  # each canary account came from its own /24

            def tally() -> tuple[float, float, float, float]:
                return (w.metric("ratehound_evicted_keys_total", kind="account"),
                        w.metric("ratehound_tracked_keys", kind="account"),
                        w.metric("ratehound_evicted_keys_total", kind="network"),
                        w.metric("ratehound_tracked_keys", kind="network"))

            wait_until(lambda: (t := tally())[0] + t[1] == accounts and t[2] + t[3] == networks, timeout=15)
            ev_a, tracked_a, ev_n, tracked_n = tally()
            sample()
            assert max(s["accounts"] for s in samples) <= CAP * PARTITIONS
            assert max(s["networks"] for s in samples) <= CAP * PARTITIONS
            assert max(s["clusters"] for s in samples) <= CAP * PARTITIONS
            assert ev_a + tracked_a == accounts, (ev_a, tracked_a, accounts)
            assert ev_n + tracked_n == networks, (ev_n, tracked_n, networks)

            # memory and series do not grow with the keys: first quarter of the flood vs last
            q1 = [s for s in samples if 0 < s["done"] <= KEYS / 4]
            q4 = [s for s in samples if s["done"] >= KEYS * 3 / 4]
            assert q1 and q4, samples
            rss1, rss4 = max(s["rss"] for s in q1), max(s["rss"] for s in q4)
            series1, series4 = max(s["series"] for s in q1), max(s["series"] for s in q4)
            record_property("flood_s", round(flood_s))
            record_property("rss_mb", {"q1_max": round(rss1), "q4_max": round(rss4),
                                       "max": round(max(s["rss"] for s in samples))})
            record_property("series", [series1, series4])
            print(f"\nkey flood: {KEYS} accounts + {KEYS} IPv6 networks in {flood_s:.0f} s; RSS max first quarter "
                  f"{rss1:.0f} MB, last quarter {rss4:.0f} MB; series {series1} -> {series4}; evicted accounts "
                  f"{ev_a:.0f}, networks {ev_n:.0f}")
            print("(events done, RSS MB, clusters):",
                  [(int(s["done"]), round(s["rss"]), int(s["clusters"])) for s in samples[::5]])
            assert series4 <= series1

            # Redis holds a key per decision in force, nothing per flooded key
            decisions = [orjson.loads(x.value) for x in consume_all(broker.bootstrap, w.topics["decisions"], timeout=10)]
            enforced = {f"rh:d:{d['scope']}:{d['key']}" for d in decisions if d["action"] in ("throttle", "block")}
            keys = {k.decode() for k in r.scan_iter("rh:*", count=1000)}
            assert enforced and {k for k in keys if k.startswith("rh:d:")} <= enforced
            assert len(keys) <= len(decisions) + 2, keys - enforced  # + the heartbeat and the decision log
            r.close()

            if rss4 - rss1 > RSS_GROWTH_MB:
                raise RssGrowsWithKeys(f"RSS {rss1:.0f} MB in the first quarter, {rss4:.0f} MB in the last")
        finally:
            w.stop()  # before its broker goes: a worker without one takes 20 s to give up
