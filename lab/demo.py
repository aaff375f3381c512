"""``ratehound demo``: the whole pipeline on embedded defaults, decisions printed as they happen.

Starts (or reuses) a broker and a Redis, one worker and the traffic simulator
producing a mixed scenario with attacks in real time, then prints every
decision from the ``decisions`` topic. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition

from lab.embedded import EmbeddedBroker, EmbeddedRedis, ExternalBroker, free_port, redis_reachable
from lab.workers import WorkerProcess, app_topics, create_app_topics
from stream.settings import Settings

_COLOURS = {"block": "\033[31m", "throttle": "\033[33m", "review": "\033[36m", "allow": "\033[32m"}
_RESET = "\033[0m"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def format_decision(d: dict, colour: bool) -> str:
    """One terminal line per decision: when, what, on whom, why, and the figures behind it.

    A card's block (scope ``payment``, the key its ``payment_fp``) reads as any other:

    >>> d = {"ts": 0.0, "scope": "payment", "key": "pay_7f3a", "action": "block", "reason": "payment_campaign",
    ...      "score": 0.83, "evidence": {"card_accounts": 6, "card_campaign_accounts": 5, "card_networks": 6}}
    >>> format_decision(d, colour=False).split()[1:]
    ['BLOCK', 'payment', 'pay_7f3a', 'payment_campaign', 'score=0.83', 'card_accounts=6,', 'card_campaign_accounts=5,', 'card_networks=6']
    """
    ev = d.get("evidence") or {}
    figures = ", ".join(f"{k}={v}" for k, v in list(ev.items())[:4])
    action = d["action"].upper()
    if colour:
        action = f"{_COLOURS.get(d['action'], '')}{action:8}{_RESET}"
    else:
        action = f"{action:8}"
    limit = f" @{d['limit_rps']}/s" if d.get("limit_rps") else ""
    when = time.strftime("%H:%M:%S", time.localtime(d["ts"]))
    return (f"{when} {action}{limit:7} {d['scope']:7} {d['key'][:42]:42} {d['reason']:22} "
            f"score={d.get('score', 0):.2f}  {figures}")


def run_demo(scenario: str = "mixed", scale: float = 0.3, duration: float = 600.0, web_port: int | None = None,
             seed: int = 7, exit_after: float | None = None, partitions: int = 2) -> Counter:
    """Run the demo until Ctrl-C (or ``exit_after`` seconds); returns decisions counted by reason.

    ``KAFKA_BROKER`` and ``REDIS_URL`` are used when set; otherwise the embedded broker, and the
    default Redis or, if none answers there, a redis-server of its own."""
    colour = sys.stdout.isatty()
    defaults = Settings()  # the environment's, checked (a bad value stops here with its variable named)
    counts: Counter = Counter()

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, interrupted)  # `kill` stops everything too, like Ctrl-C
    with ExitStack() as stack:
        broker_env = os.environ.get("KAFKA_BROKER")
        if broker_env:
            broker: EmbeddedBroker | ExternalBroker = ExternalBroker(broker_env)
            print(f"broker: {broker.bootstrap} (KAFKA_BROKER)")
        else:
            broker = stack.enter_context(EmbeddedBroker())
            print(f"broker: embedded tansu at {broker.bootstrap} (memory only)")
        redis_url = defaults.redis_url
        if redis_reachable(redis_url):
            print(f"redis:  {redis_url}")
        else:
            try:
                redis_url = stack.enter_context(EmbeddedRedis()).url
            except Exception as exc:  # noqa: BLE001 - the message is the point here
                sys.exit(f"ratehound demo: no Redis at {defaults.redis_address} and could not start one ({exc}); "
                         "install Debian's redis-server (make deps) or set REDIS_URL")
            print(f"redis:  started redis-server at {redis_url}")
        web_port = web_port or defaults.web_port
        if not _port_free(web_port):
            web_port = free_port()
        app_id = f"ratehound-demo-{os.getpid()}"
        topics = app_topics(app_id)
        create_app_topics(broker.url, app_id, partitions, topics)
        run_dir = Path(tempfile.gettempdir())
        worker = WorkerProcess(broker.url, redis_url, app_id, run_dir, partitions, topics=topics, web_port=web_port,
                               log_path=run_dir / f"{app_id}.log")
        sims: list[subprocess.Popen] = []

        def stop_all() -> None:
            for p in sims:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            worker.stop()  # its own bound (RATEHOUND_SHUTDOWN_TIMEOUT_S), then killed
            for p in sims:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

        stack.callback(stop_all)
        worker.start()
        print(f"worker: pid {worker.pid}, log {worker.log_path}, metrics at http://127.0.0.1:{web_port}/metrics")
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, value_deserializer=orjson.loads,
                                 enable_auto_commit=False, consumer_timeout_ms=500)
        # No group, nothing to commit; bounded, since after Ctrl-C the broker may already be gone.
        stack.callback(consumer.close, autocommit=False, timeout_ms=2000)
        tps = [TopicPartition(topics["decisions"], p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        try:
            worker.wait_ready(timeout=60.0)
        except RuntimeError:
            sys.exit(f"ratehound demo: the worker did not come up; its log: {worker.log_path}")
        sim = subprocess.Popen([sys.executable, "-m", "stream.cli", "simulate", "--kafka", "--scenario", scenario,
                                "--scale", str(scale), "--duration", str(duration), "--seed", str(seed),
                                "--batch", "100"], env=worker.env, stderr=subprocess.DEVNULL)
        sims.append(sim)
        print(f"traffic: scenario '{scenario}' in real time for {duration:.0f} s (attacks start within "
              f"{duration / 3:.0f} s); Ctrl-C stops everything\n")
        started = time.monotonic()
        try:
            while True:
                for msg in consumer:
                    d = msg.value
                    counts[d["reason"]] += 1
                    print(format_decision(d, colour), flush=True)
                if worker.poll() is not None:
                    print(f"worker exited with {worker.poll()}; its log: {worker.log_path}", file=sys.stderr)
                    break
                if exit_after is not None and time.monotonic() - started > exit_after:
                    break
                if sim.poll() is not None and exit_after is None:
                    print("traffic finished; Ctrl-C to stop")
                    exit_after = time.monotonic() - started + 30
        except KeyboardInterrupt:
            print("\nstopping...")
        # Stopping is bounded (each process gets 10 s, then is killed): a second Ctrl-C (a terminal
        # sends one to every process of the group, `timeout` sends two) must not cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("decisions by reason: " + ", ".join(f"{k}={v}" for k, v in counts.most_common()) if counts
              else "no decisions yet")
    signal.signal(signal.SIGINT, before[0])
    signal.signal(signal.SIGTERM, before[1])
    return counts
