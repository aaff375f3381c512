"""``make soak``: one worker under a steady load with churning keys for N minutes; does it stay flat?

Starts its own embedded broker and redis-server, one ``ratehound worker`` and a load of
``--rate`` events/s from a sliding population of accounts: ``--churn`` new accounts (each
with its own address, half of them IPv6) arrive every second while the oldest go idle and,
with the soak's compressed thresholds, expire (accounts idle ``--idle-expiry`` s) or are
evicted (networks beyond ``--cap-networks`` per partition: they expire after 2 h only), so
tracked keys reach their steady state within two or three minutes. Every ``--probe-every`` s a quiet old account bursts
at 20 requests/s; the probe's latency is its decision's event time to the moment the
decision is readable in Redis. Every ``--every`` s it samples the worker: RSS, events
processed, lag, tracked keys, evictions, decision keys in Redis. Prints a table and, as the
last line, one JSON object with first- and last-quarter means and a ``flat`` verdict (the
slope of RSS after the first quarter, in MB per minute, at most ``--flat-mb-per-min``).
Not a test: it runs for minutes and judges nothing but its own verdict.

    python -m lab.soak --minutes 10 [--rate 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import orjson
import redis

from lab.embedded import EmbeddedBroker, EmbeddedRedis, wait_until
from lab.workers import WorkerProcess, app_topics, create_app_topics
from stream.records import partition_of

# Neither young (clusters) nor old (an old account busy at once is "awakened" and held 300 s):
# the load's accounts are plain customers whose state expires when they go idle.
MIDDLE_AGE_S = 10 * 86400.0
PROBE_RPS = 20.0
PROBE_S = 3.0
COLUMNS = ("t_s", "rss_mb", "events", "ev_per_s", "lag_s", "lag_msgs", "accounts", "networks", "evicted_acc",
           "evicted_net", "redis_keys", "probe_s")


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two points).

    >>> slope([0, 1, 2, 3], [10, 12, 14, 16])
    2.0
    >>> slope([5], [1])
    0.0
    """
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def quarters(rows: list[dict], key: str) -> tuple[float | None, float | None]:
    """Mean of ``key`` over the first and the last quarter of the rows (None where absent).

    >>> quarters([{"v": v} for v in (1, 2, 3, 4, 5, 6, 7, 8)], "v")
    (1.5, 7.5)
    """
    k = max(1, len(rows) // 4)

    def mean(part: list[dict]) -> float | None:
        vals = [r[key] for r in part if r.get(key) is not None]
        return round(sum(vals) / len(vals), 3) if vals else None

    return mean(rows[:k]), mean(rows[-k:])


class Load:
    """The offered traffic: a sliding population of accounts, plus a bursting probe now and then."""

    def __init__(self, rate: float, active: int, churn: float, probe_every: float):
        self.rate = rate
        self.active = active
        self.churn = churn
        self.probe_every = probe_every
        self.sent = 0
        self.probes: dict[str, float] = {}  # probe account -> wall time its burst began
        self._t0 = 0.0
        self._i = 0

    def address(self, i: int) -> str:
        # Half IPv4 (a /24 holds 256 accounts), half IPv6 (a /48 of its own): networks churn too.
        if i % 2:
            return f"2a00:{i >> 16:x}:{i & 0xFFFF:x}::1"
        return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"

    def tick(self, now: float) -> list[dict]:
        """Events for one 100 ms tick ending at ``now``."""
        if not self._t0:
            self._t0 = now
        elapsed = now - self._t0
        base = int(elapsed * self.churn)  # the oldest active account: the ones below went idle
        n = max(1, round(self.rate / 10))
        evs = []
        for _ in range(n):
            self._i += 1
            i = base + (self._i * 7919) % self.active
            evs.append({"event_id": f"k{self._i}", "ts": now, "account_id": f"acct_{i:08d}", "ip": self.address(i),
                        "input_tokens": 900, "output_tokens": 300, "account_created_ts": now - MIDDLE_AGE_S,
                        "user_agent": "sdk-python/0.42.0"})
        k = int(elapsed // self.probe_every)
        if k >= 1:  # a probe from the second period on: the first lets the worker settle
            name = f"probe_{k:05d}"
            began = self.probes.setdefault(name, now)
            if now - began < PROBE_S:
                for j in range(round(PROBE_RPS / 10)):
                    evs.append({"event_id": f"{name}-{now:.2f}-{j}", "ts": now, "account_id": name,
                                "ip": "198.51.100.7", "input_tokens": 900, "output_tokens": 300,
                                "account_created_ts": now - 4e7, "user_agent": "sdk-python/0.42.0"})
        self.sent += len(evs)
        return evs


def _config(path: Path, idle_expiry: float, cap_accounts: int, cap_networks: int) -> None:
    # The id and address caches are capped too, and small, so every bound is reached within minutes:
    # what still grows after that is a leak.
    path.write_text(f"version: soak\naccount:\n  idle_expiry_s: {idle_expiry}\n  max_accounts: {cap_accounts}\n"
                    f"network:\n  max_networks: {cap_networks}\n  ip_cache_size: {cap_networks}\n"
                    f"event_time:\n  dedupe_ids: {cap_accounts}\n")


def _prime(bootstrap: str, topic: str, partitions: int) -> int:
    """One event per partition dated 310 s ago: each stage has watched long enough for burst rules
    (the burst section's ``min_observed_s``, 300 s), as a worker that has been up for five minutes has."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    now = time.time()
    names: dict[int, str] = {}
    i = 0
    while len(names) < partitions:
        names.setdefault(partition_of(f"prime_{i}", partitions), f"prime_{i}")
        i += 1
    for name in names.values():
        p.send(topic, value=orjson.dumps({"event_id": name, "ts": now - 310.0, "account_id": name,
                                          "ip": "192.0.2.1", "account_created_ts": now - 4e7}))
    p.flush()
    p.close()
    return len(names)


def _rss_slope_per_min(rows: list[dict]) -> float:
    tail = rows[len(rows) // 4:]
    return round(slope([r["t_s"] / 60 for r in tail], [r["rss_mb"] for r in tail]), 2)


def run(minutes: float, rate: float, active: int, churn: float, partitions: int, every: float,
        probe_every: float, idle_expiry: float, cap_accounts: int, cap_networks: int,
        flat_mb_per_min: float) -> dict:
    from kafka import KafkaProducer

    app_id = f"soak-{os.getpid()}"
    rows: list[dict] = []
    latencies: dict[str, float] = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rh-soak-")))
        broker = stack.enter_context(EmbeddedBroker())
        rds = stack.enter_context(EmbeddedRedis())
        topics = app_topics(app_id)
        create_app_topics(broker.url, app_id, partitions, topics)
        cfg = tmp / "soak.yaml"
        _config(cfg, idle_expiry, cap_accounts, cap_networks)
        w = WorkerProcess(broker.url, rds.url, app_id, tmp, partitions, config=str(cfg)).start()
        stack.callback(w.stop)
        w.wait_ready()
        primed = _prime(broker.bootstrap, topics["requests"], partitions)
        if not wait_until(lambda: w.processed() >= primed, timeout=60):
            raise RuntimeError("the worker did not process the priming events")
        print(f"soak: {minutes:g} min at {rate:g} events/s, {active} active accounts, {churn:g} new/s, idle expiry "
              f"{idle_expiry:g} s, caps {cap_accounts} accounts and {cap_networks} networks per partition, "
              f"{partitions} partitions; worker pid {w.pid}, "
              f"log {w.log_path}", flush=True)
        print(" ".join(f"{c:>11}" for c in COLUMNS), flush=True)

        load = Load(rate, active, churn, probe_every)
        stop = threading.Event()
        r = redis.Redis.from_url(rds.url)

        def produce() -> None:
            p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks=1)
            start = time.monotonic()
            ticks = 0
            while not stop.is_set():
                p.send(topics["requests"], value=orjson.dumps(load.tick(time.time())))
                ticks += 1
                time.sleep(max(0.0, start + ticks * 0.1 - time.monotonic()))
            p.flush()
            p.close()

        def watch_probes() -> None:
            while not stop.is_set():
                for name in [n for n in list(load.probes) if n not in latencies]:
                    raw = r.get(f"rh:d:account:{name}")
                    if raw:
                        latencies[name] = time.time() - orjson.loads(raw)["ts"]
                time.sleep(0.05)

        threads = [threading.Thread(target=f, daemon=True) for f in (produce, watch_probes)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        last_events, last_t = w.processed(), t0
        try:
            while (now := time.monotonic()) - t0 < minutes * 60:
                time.sleep(max(0.0, t0 + (len(rows) + 1) * every - time.monotonic()))
                now = time.monotonic()
                m = w.metrics()
                if w.poll() is not None or not m:
                    raise RuntimeError(f"the worker is gone (exit {w.poll()}); log {w.log_path}")
                events = w.processed()
                recent = [latencies[n] for n in sorted(latencies)[-3:]]
                row = {
                    "t_s": round(now - t0),
                    "rss_mb": round(w.rss_mb(), 1),
                    "events": int(events),
                    "ev_per_s": round((events - last_events) / (now - last_t)),
                    "lag_s": round(m.get("ratehound_event_time_lag_seconds", 0.0), 2),
                    "lag_msgs": int(sum(v for k, v in m.items() if k.startswith("ratehound_consumer_lag_messages"))),
                    "accounts": int(m.get('ratehound_tracked_keys{kind="account"}', 0)),
                    "networks": int(m.get('ratehound_tracked_keys{kind="network"}', 0)),
                    "evicted_acc": int(m.get('ratehound_evicted_keys_total{kind="account"}', 0)),
                    "evicted_net": int(m.get('ratehound_evicted_keys_total{kind="network"}', 0)),
                    "redis_keys": sum(1 for _ in r.scan_iter("rh:d:*", count=1000)),
                    "probe_s": round(max(recent), 2) if recent else None,
                }
                last_events, last_t = events, now
                rows.append(row)
                print(" ".join(f"{'-' if row[c] is None else row[c]:>11}" for c in COLUMNS), flush=True)
        finally:
            stop.set()
            for t in threads:
                t.join(5)
            r.close()
    probes_due = [n for n, began in load.probes.items() if time.time() - began > PROBE_S + 10]
    lat = sorted(latencies.values())
    q = {k: quarters(rows, k) for k in ("rss_mb", "ev_per_s", "lag_s", "accounts", "networks", "probe_s")}
    rss_slope = _rss_slope_per_min(rows)
    return {
        "minutes": minutes, "rate": rate, "events": rows[-1]["events"] if rows else 0, "samples": len(rows),
        **{f"{k}_first_quarter": v[0] for k, v in q.items()},
        **{f"{k}_last_quarter": v[1] for k, v in q.items()},
        "rss_max_mb": max((r["rss_mb"] for r in rows), default=None),
        "rss_slope_mb_per_min": rss_slope,
        "probes": len(probes_due), "probes_decided": sum(1 for n in probes_due if n in latencies),
        "probe_p50_s": round(lat[len(lat) // 2], 2) if lat else None,
        "probe_max_s": round(lat[-1], 2) if lat else None,
        "flat": rss_slope <= flat_mb_per_min,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s offered")
    ap.add_argument("--active", type=int, default=2000, help="accounts active at any moment")
    ap.add_argument("--churn", type=float, default=100.0, help="new accounts per second (as many go idle)")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--probe-every", type=float, default=10.0, help="seconds between probe bursts")
    ap.add_argument("--idle-expiry", type=float, default=30.0, help="account.idle_expiry_s for the soak")
    ap.add_argument("--cap-accounts", type=int, default=20_000, help="account.max_accounts (per partition)")
    ap.add_argument("--cap-networks", type=int, default=2_000, help="network.max_networks (per partition)")
    ap.add_argument("--flat-mb-per-min", type=float, default=1.0, help="RSS slope that still counts as flat")
    a = ap.parse_args(argv)
    summary = run(a.minutes, a.rate, a.active, a.churn, a.partitions, a.every, a.probe_every, a.idle_expiry,
                  a.cap_accounts, a.cap_networks, a.flat_mb_per_min)
    print(json.dumps(summary))
    if not summary["flat"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
