"""A backtest on the workers' own engine: shadow workers read a recorded requests topic with candidate thresholds.

Replay (``ratehound replay``) runs the detector in one or two processes; at a large provider's scale
a recorded hour is more than two cores get through in time. A shadow run uses what already scales
out: a group of ``ratehound worker`` processes with their own app id (``ratehound-shadow-<name>``:
their own consumer groups, snapshot log and internal topics), the candidate thresholds file, their
decisions on their own topic and in their own Redis (a private one here, and the app id as the key
prefix: nothing the gateways read). It

1. loads an events file into the shadow's requests topic (``--topic``: read an existing recorded
   topic instead, on ``KAFKA_BROKER``),
2. starts ``--workers`` shadow workers and waits until every event is judged and the group stages
   are done (their consumer lag zero),
3. writes the shadow decisions topic to ``--out`` (JSON Lines, replay's format), and
4. with ``--against-replay``, replays the file under the same thresholds and prints
   ``ratehound compare --decisions``'s report of the two.

    python -m lab.shadow EVENTS --config candidate.yaml --workers 2 --out shadow.jsonl [--against-replay]
    ratehound compare --decisions current.jsonl shadow.jsonl --labels labels.json EVENTS

On a production cluster the same run is environment only (README, Scaling out): start workers
with ``RATEHOUND_APP_ID``, ``RATEHOUND_CONFIG``, ``RATEHOUND_TOPIC_*`` and ``RATEHOUND_REDIS_PREFIX``
set as ``shadow_env`` gives them, and ``REDIS_URL`` on a scratch database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import orjson

from lab.bench import drain
from lab.embedded import EmbeddedBroker, EmbeddedRedis, ExternalBroker, consume_all
from lab.producer import load_file
from lab.workers import WorkerProcess, app_topics, create_app_topics


def shadow_env(app_id: str) -> dict[str, str]:
    """What a shadow worker has besides its app id, thresholds and topics: its own Redis key prefix."""
    return {"RATEHOUND_REDIS_PREFIX": app_id}


def run_shadow(events: str, broker_url: str, bootstrap: str, redis_url: str, out: Path, workers: int = 2,
               partitions: int = 4, config: str | None = None, name: str | None = None,
               topic: str | None = None, log_dir: Path | None = None, timeout: float = 1800.0) -> dict:
    """Run shadow workers over ``events`` (or the recorded ``topic``); their decisions to ``out``.
    Returns the timings, the events judged and the workers' CPU seconds from when they answer."""
    app_id = f"ratehound-shadow-{name or f'{os.getpid()}-{int(time.time())}'}"
    topics = app_topics(app_id)
    if topic is not None:
        topics["requests"] = topic
    create_app_topics(broker_url, app_id, partitions, topics)
    t0 = time.monotonic()
    n = load_file(events, bootstrap, topics["requests"]) if topic is None else _topic_size(bootstrap, topic)
    loaded = time.monotonic() - t0
    with tempfile.TemporaryDirectory(prefix="rh-shadow-") as d:
        logs = log_dir or Path(d)
        ws = [WorkerProcess(broker_url, redis_url, app_id, logs, partitions, topics=topics, config=config,
                            extra_env=shadow_env(app_id)) for _ in range(workers)]
        t1 = time.monotonic()
        try:
            for w in ws:
                w.start()
            for w in ws:
                w.wait_ready()
            cpu0 = sum(w.cpu_seconds() for w in ws)  # start-up (imports) is not the run's
            _, rate = drain(ws, n, timeout=timeout)
            judged = time.monotonic() - t1
            cpu = sum(w.cpu_seconds() for w in ws) - cpu0
        finally:
            for w in ws:
                w.stop()
    t2 = time.monotonic()
    records = consume_all(bootstrap, topics["decisions"], timeout=60)
    # In event-time order, as replay writes them (the topic is in order per key only): the scorer reads
    # each key's enforcement from its decisions in order.
    with open(out, "wb") as f:
        values = [r.value or b"{}" for r in records]
        for _, value in sorted(((orjson.loads(v)["ts"], i), v) for i, v in enumerate(values)):
            f.write(value + b"\n")
    return {"app_id": app_id, "events": n, "workers": workers, "partitions": partitions,
            "load_s": round(loaded, 1), "start_to_done_s": round(judged, 1), "events_per_s": round(rate),
            "worker_cpu_s": round(cpu, 1), "decisions": len(records), "dump_s": round(time.monotonic() - t2, 1)}


def _topic_size(bootstrap: str, topic: str) -> int:
    """Events on a recorded topic: each message an event or an array of them."""
    n = 0
    for r in consume_all(bootstrap, topic, timeout=600):
        v = orjson.loads(r.value or b"[]")
        n += len(v) if isinstance(v, list) else 1
    return n


def replay_decisions(events: str, config: str | None, out: Path) -> tuple[float, float]:
    """``ratehound replay`` of the same file under the same thresholds, to ``out``; its seconds and CPU
    seconds (this process and its second one)."""
    import resource

    from backtest.replay import replay_to_file
    from detectors.config import load_config

    def cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))

    t, c = time.monotonic(), cpu()
    with open(out, "wb") as f:
        replay_to_file(events, load_config(config), f, processes=2 if (os.cpu_count() or 1) >= 2 else 1)
    return time.monotonic() - t, cpu() - c


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events", help="JSON Lines of request events (.jsonl or .jsonl.gz)")
    ap.add_argument("--config", help="the candidate thresholds YAML (default: the shipped defaults)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--name", help="the shadow's name: app id ratehound-shadow-NAME (default: pid and time)")
    ap.add_argument("--topic", help="read this recorded requests topic (KAFKA_BROKER) instead of loading EVENTS")
    ap.add_argument("--out", required=True, help="the shadow decisions, JSON Lines")
    ap.add_argument("--against-replay", action="store_true",
                    help="replay EVENTS under the same thresholds and compare (ratehound compare --decisions)")
    ap.add_argument("--labels", help="with --against-replay: labels, to count and score by label")
    a = ap.parse_args(argv)
    with ExitStack() as stack:
        ext = os.environ.get("KAFKA_BROKER")
        broker = ExternalBroker(ext) if ext else stack.enter_context(EmbeddedBroker())
        redis_url = stack.enter_context(EmbeddedRedis()).url  # the shadow's own: nothing the gateways read
        row = run_shadow(a.events, broker.url, broker.bootstrap, redis_url, Path(a.out), a.workers, a.partitions,
                         a.config, a.name, a.topic)
    print(json.dumps(row), file=sys.stderr)
    if a.against_replay:
        from backtest.compare import compare_decisions

        replayed = Path(a.out).with_suffix(".replay.jsonl")
        seconds, cpu = replay_decisions(a.events, a.config, replayed)
        row.update(replay_s=round(seconds, 1), replay_cpu_s=round(cpu, 1))
        print(json.dumps(row), file=sys.stderr)
        print(json.dumps(compare_decisions(str(replayed), a.out, a.labels, a.events if a.labels else None),
                         indent=1))


if __name__ == "__main__":
    main()
