"""``make bench``: throughput, latency, memory and recovery, measured through the real broker.

Each section starts its own embedded broker (tansu never frees memory) unless
``KAFKA_BROKER`` is set, preloads or streams simulated traffic with attacks, runs
real ``ratehound worker`` processes and reads their ``/metrics``. Prints a table
and, as the last line, one JSON object with the figures. Benchmarks, not tests:
nothing here passes or fails on speed.

The machine has two cores and the broker shares them, so scale-out is measured in the
workers' CPU time (user + system, from ``/proc``): events per worker-CPU-second with one
worker and with two in one group on the same events, and their ratio
(``scaleout_cpu_efficiency``). Detector memory is ``lab.memory``'s, every per-key
structure at a million accounts.

    python -m lab.bench [--events 400000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import orjson
import redis

from detectors.policy import ENFORCING, STRENGTH
from lab.embedded import EmbeddedBroker, EmbeddedRedis, ExternalBroker, consume_all
from lab.workers import WorkerProcess, app_topics, create_app_topics

# -- traffic ----------------------------------------------------------------------------------------------

def simulation(n: int, seed: int = 5):
    """The mixed scenario (honest groups plus attacks) the benchmark takes its first ``n`` events from."""
    import traffic

    return traffic.generate("mixed", seed=seed, duration_s=7200.0, scale=max(1.0, n / 300_000))


def honest_accounts(n: int, seed: int = 5) -> set[str]:
    """The accounts labelled benign in ``simulation(n, seed)``."""
    return {k for k, v in simulation(n, seed).labels()["accounts"].items() if v.get("label") == "benign"}


def simulated_events(n: int, end: float, seed: int = 5) -> list[dict]:
    """The first ``n`` events of ``simulation(n, seed)``, re-timed to end at ``end`` (the past: a live
    worker rejects events from the future)."""
    sim = simulation(n, seed)
    out: list[dict] = []
    for ev in sim.events():
        out.append(ev)
        if len(out) >= n:
            break
    shift = end - out[-1]["ts"]
    for ev in out:
        ev["ts"] = round(ev["ts"] + shift, 3)
        if "account_created_ts" in ev:
            ev["account_created_ts"] = round(ev["account_created_ts"] + shift, 3)
    return out


def preload(bootstrap: str, topic: str, events: list[dict], per_message: int) -> int:
    """Write events to the topic: JSON arrays of ``per_message`` events, or one object per message."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20, acks=1,
                      max_request_size=8 << 20, compression_type=None)
    n = 0
    parts = sorted(p.partitions_for(topic) or [0])
    if per_message == 1:
        for ev in events:
            p.send(topic, key=ev["account_id"].encode(), value=orjson.dumps(ev))
            n += 1
    else:
        # Round-robin over partitions, as a fleet of gateways would spread its arrays: every partition
        # covers the same span of event time. (With no key, the sticky partitioner would fill one
        # partition with minutes of traffic before the next, and a worker reading them side by side
        # would see events from far apart in time.)
        for i in range(0, len(events), per_message):
            p.send(topic, value=orjson.dumps(events[i:i + per_message]), partition=parts[n % len(parts)])
            n += 1
    p.flush()
    p.close()
    return n


# -- processes --------------------------------------------------------------------------------------------

@contextmanager
def services(partitions: int, app_id: str):
    """A fresh broker (or KAFKA_BROKER), a private redis-server, and the topics for one app id."""
    with ExitStack() as stack:
        ext = os.environ.get("KAFKA_BROKER")
        broker = ExternalBroker(ext) if ext else stack.enter_context(EmbeddedBroker())
        redis_url = stack.enter_context(EmbeddedRedis()).url
        topics = app_topics(app_id)
        create_app_topics(broker.url, app_id, partitions, topics)
        yield broker, redis_url, topics


def wait_reading(workers: list[WorkerProcess], partitions: int, timeout: float = 90.0) -> float:
    """Seconds until the workers between them read every partition of each input topic, each worker
    some (where there are enough): up is not consuming yet (a group's first join waits out the
    rebalance timeout on the embedded broker), and one worker holding all is a rebalance to come."""
    t0 = time.monotonic()
    want = set(range(partitions))
    while time.monotonic() - t0 < timeout:
        held: dict[str, set[int]] = {"requests": set(), "by_account": set(), "by_group": set()}
        each = True
        for w in workers:
            reading = w.reading()
            each = each and (partitions < len(workers) or all(reading.get(t) for t in held))
            for topic, ps in reading.items():
                held.setdefault(topic, set()).update(ps)
        if each and all(ps == want for ps in held.values()):
            return time.monotonic() - t0
        time.sleep(0.2)
    raise RuntimeError(f"workers not reading every partition after {timeout}s")


def drain(workers: list[WorkerProcess], total: int, timeout: float = 600.0) -> tuple[float, float]:
    """Seconds and events/s from the first processed event until all ``total`` are through both stages:
    every event judged by its account stage, and nothing left for the group stages (their consumer lag,
    sampled every second, at zero and their count still). From the call, if everything was done before
    the first look: a run too small to time."""
    t_first = None
    first_count = 0.0
    t_call = time.monotonic()
    deadline = time.monotonic() + timeout
    last = 0.0
    groups_seen = -1.0
    while time.monotonic() < deadline:
        ms = [w.metrics() for w in workers]
        done = sum(sum(m.get(f'ratehound_events_total{{outcome="{o}"}}', 0.0)
                       for o in ("processed", "duplicate", "rejected")) for m in ms)
        now = time.monotonic()
        if t_first is None and 0 < done < total:
            t_first, first_count = now, done
        if done >= total:
            groups = sum(m.get("ratehound_group_observations_total", 0.0) for m in ms)
            behind = sum(m.get(f'ratehound_consumer_lag_messages{{topic="{t}"}}', 1.0)
                         for m in ms for t in (workers[0].topics["by_account"], workers[0].topics["by_group"]))
            if behind == 0 and groups == groups_seen:
                if t_first is None:
                    t_first, first_count = t_call, 0.0
                dt = now - (t_first or now) - 1.0  # the group count was already still a second ago
                return dt, (done - first_count) / dt if dt > 0 else math.inf
            groups_seen = groups
            time.sleep(1.0)
            continue
        last = done
        time.sleep(0.1)
    raise RuntimeError(f"only {last} of {total} events processed in {timeout}s")


# -- sections ---------------------------------------------------------------------------------------------

def bench_worker(events: list[dict], per_message: int, workers: int, partitions: int, tmp: Path) -> dict:
    """``workers`` workers in one group read ``events`` from ``partitions`` partitions: events/s (wall clock,
    from the first event judged) and events per worker-CPU-second (user + system time of the worker
    processes over the same window, from /proc: what the machine's two cores shared with the broker
    cannot blur). Arrays are written once the workers have joined and hold every partition, so neither
    start-up nor a rebalance is in the window; single events, whose writing is slower than their
    reading, are written first (the CPU figure then includes the end of the workers' start)."""
    app_id = f"bench-{per_message}-{workers}-{os.getpid()}-{int(time.time())}"
    with services(partitions, app_id) as (broker, redis_url, topics):
        if per_message == 1:
            preload(broker.bootstrap, topics["requests"], events, per_message)
        # With two workers, pin each to a core; the broker shares them (2-core machine).
        ws = [WorkerProcess(broker.url, redis_url, app_id, tmp, partitions, cpu=(i if workers > 1 else None)).start()
              for i in range(workers)]
        try:
            for w in ws:
                w.wait_ready()
            if per_message > 1:
                wait_reading(ws, partitions)
            cpu0 = [w.cpu_seconds() for w in ws]
            if per_message > 1:
                preload(broker.bootstrap, topics["requests"], events, per_message)
            dt, rate = drain(ws, len(events))
            cpu = [w.cpu_seconds() - c for w, c in zip(ws, cpu0, strict=True)]
            rss = sum(w.rss_mb() for w in ws)
            # Counted in the rate (each was read and judged) but worth seeing: input partitions read
            # out of step make some events late for their account.
            late = sum(w.metrics().get('ratehound_dlq_total{reason="late"}', 0.0) for w in ws)
        finally:
            for w in ws:
                w.stop()
        enforced = enforced_keys(broker.bootstrap, topics["decisions"])
    return {"events": len(events), "seconds": round(dt, 2), "events_per_s": round(rate), "rss_mb": round(rss),
            "cpu_s": [round(c, 2) for c in cpu], "events_per_cpu_s": round(len(events) / max(sum(cpu), 1e-9)),
            "late": int(late), "enforced": enforced}


def enforced_keys(bootstrap: str, topic: str) -> set[tuple[str, str, str]]:
    """(scope, key, strongest action) for every throttle or block on the decisions topic."""
    best: dict[tuple[str, str], str] = {}
    for rec in consume_all(bootstrap, topic, timeout=15):
        d = orjson.loads(rec.value or b"{}")
        a = d.get("action")
        if a in ENFORCING and STRENGTH[a] > STRENGTH[best.get((d["scope"], d["key"]), "allow")]:
            best[(d["scope"], d["key"])] = a
    return {(scope, key, a) for (scope, key), a in best.items()}


def agreement(one: set, other: set, names: tuple[str, str] = ("one_worker", "two_workers"),
              honest: set[str] | None = None) -> dict:
    """How far two runs' enforcement agrees (the two-worker run against the one-worker run, or a
    worker against ``ratehound replay`` of the same events); with ``honest``, how many honest accounts each enforced."""
    both = len(one & other)
    union = len(one | other)
    a, b = names
    row = {f"enforced_{a}": len(one), f"enforced_{b}": len(other), "same": both,
           f"only_{a}": len(one - other), f"only_{b}": len(other - one),
           "agreement": round(both / union, 4) if union else 1.0}  # neither enforced anything: they agree
    if honest is not None:
        for name, keys in ((a, one), (b, other)):
            row[f"honest_{name}"] = sum(1 for scope, key, _ in keys if scope == "account" and key in honest)
    return row


def bench_latency(rate: float, seconds: float, partitions: int, tmp: Path) -> dict:
    """Offered load at ``rate`` events/s with a steady campaign; event produced -> decision in Redis."""
    from kafka import KafkaProducer

    app_id = f"bench-lat-{os.getpid()}-{int(time.time())}"
    lat: list[float] = []
    with services(partitions, app_id) as (broker, redis_url, topics):
        w = WorkerProcess(broker.url, redis_url, app_id, tmp, partitions).start()
        try:
            w.wait_ready()
            wait_reading([w], partitions)
            r = redis.Redis.from_url(redis_url)
            ps = r.pubsub()
            ps.subscribe("rh:decisions")
            stop = threading.Event()

            def listen() -> None:
                while not stop.is_set():
                    msg = ps.get_message(timeout=0.2)
                    if msg and msg["type"] == "message":
                        d = orjson.loads(msg["data"])
                        if d["ts"] >= warm_until:  # steady state: not the first seconds of traffic
                            lat.append(time.time() - d["ts"])

            warm_until = time.time() + 5.0
            th = threading.Thread(target=listen, daemon=True)
            th.start()
            p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks=1)
            batch = max(1, int(rate / 50))  # 50 messages a second, arrays of rate/50 events
            t_start = time.time()
            i = 0
            while time.time() - t_start < seconds + 5.0:
                now = time.time()
                evs = []
                for _ in range(batch):
                    i += 1
                    camp = i % 50 == 0  # 2 % of traffic: fresh campaign accounts, one request each
                    acct = f"camp{i}" if camp else f"user{i % 20000}"
                    evs.append({"event_id": f"l{i}", "ts": now, "account_id": acct,
                                "ip": f"10.{(i >> 8) & 255}.{i & 255}.9" if camp else f"172.16.{i % 200}.{i % 250}",
                                "input_tokens": 400 if camp else 900, "output_tokens": 3000 if camp else 300,
                                "account_created_ts": now - (600 if camp else 9e7),
                                "payment_fp": "pay_bench" if camp else f"pay{i % 20000}",
                                "user_agent": "sdk-python/0.42.0"})
                p.send(topics["requests"], value=orjson.dumps(evs))
                sleep = t_start + i / rate - time.time()
                if sleep > 0:
                    time.sleep(sleep)
            p.flush()
            time.sleep(3)
            stop.set()
            th.join(2)
            p.close()
            ps.close()
        finally:
            w.stop()
    lat.sort()
    if not lat:
        return {"decisions": 0}
    return {"offered_events_per_s": rate, "decisions": len(lat), "p50_s": round(lat[len(lat) // 2], 3),
            "p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3), "max_s": round(lat[-1], 3)}


def bench_recovery(events: list[dict], tmp: Path) -> dict:
    """A worker builds state for many accounts, is killed, and a new one recovers its table and resumes."""
    app_id = f"bench-rec-{os.getpid()}-{int(time.time())}"
    with services(1, app_id) as (broker, redis_url, topics):
        preload(broker.bootstrap, topics["requests"], events, 1000)
        w = WorkerProcess(broker.url, redis_url, app_id, tmp, 1).start()
        w.wait_ready()
        drain([w], len(events))
        accounts = w.metrics().get('ratehound_tracked_keys{kind="account"}', 0)
        time.sleep(6)  # a snapshot interval
        w.stop(sig=9)
        t0 = time.monotonic()
        w2 = WorkerProcess(broker.url, redis_url, app_id, tmp, 1).start()
        w2.wait_ready()
        # resumed = it processes a new event
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        ev = dict(events[-1], event_id="after-restart", ts=time.time())
        p.send(topics["requests"], value=orjson.dumps(ev))
        p.flush()
        p.close()
        before = w2.processed()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and w2.processed() <= before:
            time.sleep(0.1)
        recovery = time.monotonic() - t0
        w2.stop()
    return {"accounts_in_table": int(accounts), "recovery_s": round(recovery, 2)}


def bench_replay(events: list[dict], tmp: Path) -> dict:
    """``ratehound replay`` as it runs by default (two processes), and in one process."""
    from backtest.replay import ReplayStats, replay
    from detectors.config import DetectorConfig
    from traffic.files import write_events

    path = tmp / "replay.jsonl"
    write_events(events, str(path))
    row: dict = {}
    best: dict[tuple[str, str], str] = {}
    for processes, name in ((2, "events_per_s"), (1, "one_process_events_per_s")):
        stats = ReplayStats()
        t = time.perf_counter()
        for d in replay(path, DetectorConfig(), stats, processes=processes):
            if processes == 1 and d.action in ENFORCING and STRENGTH[d.action] > STRENGTH[
                    best.get((d.scope, d.key), "allow")]:
                best[(d.scope, d.key)] = d.action
        dt = time.perf_counter() - t
        row.setdefault("events", stats.events)
        row[name] = round(stats.events / dt)
    row["enforced"] = {(scope, key, a) for (scope, key), a in best.items()}  # as enforced_keys() gives
    return row


def bench_memory(n: int) -> dict:
    """Detector state per tracked account at ``n`` accounts, every per-key structure counted
    (``lab.memory``, in a process of its own so its resident memory is the detector's alone)."""
    out = subprocess.run([sys.executable, "-m", "lab.memory", "--accounts", str(n)], capture_output=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    return orjson.loads(out.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=400_000, help="events per throughput run")
    ap.add_argument("--single-events", type=int, default=100_000, help="events for one-event-per-message run")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--memory-keys", type=int, default=1_000_000)
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="a small smoke run (CI): figures are not meaningful")
    a = ap.parse_args(argv)
    if a.quick:
        a.events, a.single_events, a.memory_keys, a.latency_seconds = 20_000, 5_000, 20_000, 5.0
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rh-bench-") as d:
        tmp = Path(d)
        events = simulated_events(a.events, end=time.time() - 5.0)
        rows["replay"] = bench_replay(events, tmp)
        rows["memory"] = bench_memory(a.memory_keys)
        rows["worker_batched"] = bench_worker(events, 1000, 1, a.partitions, tmp)
        rows["worker_single"] = bench_worker(events[: a.single_events], 1, 1, a.partitions, tmp)
        rows["two_workers"] = bench_worker(events, 1000, 2, a.partitions, tmp)
        honest = honest_accounts(a.events)
        one_worker = rows["worker_batched"].pop("enforced")
        rows["scale_out"] = agreement(one_worker, rows["two_workers"].pop("enforced"), honest=honest)
        # The live worker reads its input partitions side by side, not in event-time order: it should
        # still enforce what a backtest (replay, in order) of the same events does.
        rows["live_vs_replay"] = agreement(one_worker, rows["replay"].pop("enforced"), ("worker", "replay"), honest)
        rows["worker_single"].pop("enforced")
        half = max(1000, rows["worker_batched"]["events_per_s"] // 2)
        rows["latency"] = bench_latency(half, a.latency_seconds, a.partitions, tmp)
        rows["recovery"] = bench_recovery(events[: min(len(events), 200_000)], tmp)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for name, row in rows.items():
        print(f"{name:15} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    summary = {
        "worker_events_per_s": rows["worker_batched"]["events_per_s"],
        "worker_single_events_per_s": rows["worker_single"]["events_per_s"],
        # Wall clock, two workers pinned to the two cores the broker also runs on: a floor, not scale-out.
        "two_workers_wall_clock_events_per_s": rows["two_workers"]["events_per_s"],
        "worker_events_per_cpu_s": rows["worker_batched"]["events_per_cpu_s"],
        "two_workers_events_per_cpu_s": rows["two_workers"]["events_per_cpu_s"],
        "scaleout_cpu_efficiency": round(rows["two_workers"]["events_per_cpu_s"]
                                         / rows["worker_batched"]["events_per_cpu_s"], 3),
        "p50_latency_s": rows["latency"].get("p50_s"),
        "p99_latency_s": rows["latency"].get("p99_s"),
        "replay_events_per_s": rows["replay"]["events_per_s"],
        "replay_one_process_events_per_s": rows["replay"]["one_process_events_per_s"],
        "bytes_per_account": rows["memory"]["rss_bytes_per_account"],
        "counted_bytes_per_account": rows["memory"]["counted_bytes_per_account"],
        "bytes_per_account_by_structure": rows["memory"]["structures_bytes_per_account"],
        "recovery_s": rows["recovery"]["recovery_s"],
        "two_workers_same_decisions": rows["scale_out"]["agreement"],
        "two_workers_same_keys": rows["scale_out"]["only_one_worker"] == rows["scale_out"]["only_two_workers"] == 0,
        "worker_same_as_replay": rows["live_vs_replay"]["agreement"],
        "worker_honest_accounts_enforced": rows["live_vs_replay"]["honest_worker"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
