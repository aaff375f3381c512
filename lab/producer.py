"""Traffic onto a requests topic (the gateway's side of the contract): simulated, paced to event time,
or a recorded file loaded as it stands, for shadow workers to read (``lab.shadow``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from kafka import KafkaProducer

from stream.settings import Settings


def produce_live(events: Iterable[dict], settings: Settings, speed: float = 1.0, batch: int = 100,
                 max_events: int | None = None, flush_every_s: float = 0.05) -> int:
    """Send events as they fall due (``ts`` shifted so the first one is now); returns how many were sent.

    ``batch`` > 1 sends JSON arrays of up to that many events, as batching gateways do.
    """
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap, linger_ms=5, acks=1,
                             max_request_size=4 * 1024 * 1024, **settings.kafka_client_config)
    topic = settings.topics.requests
    sent = 0
    unsent: list[bytes] = []
    start_wall = time.time()
    shift: float | None = None
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal unsent
        if not unsent:
            return
        if batch > 1:
            producer.send(topic, value=b"[" + b",".join(unsent) + b"]")
        else:
            for body in unsent:
                producer.send(topic, value=body)
        unsent = []

    try:
        for ev in events:
            if shift is None:
                shift = start_wall - ev["ts"]
            due = start_wall + (ev["ts"] + shift - start_wall) / speed
            wait = due - time.time()
            if wait > 0:
                flush()
                time.sleep(wait)
            ev = dict(ev)
            # Compressed time (speed > 1) stamps events when sent: rates then look `speed` times higher.
            ev["ts"] = round(time.time() if speed != 1.0 else ev["ts"] + shift, 3)
            if "account_created_ts" in ev:
                ev["account_created_ts"] = round(ev["account_created_ts"] + shift, 3)
            unsent.append(orjson.dumps(ev))
            sent += 1
            if len(unsent) >= batch or time.monotonic() - last_flush > flush_every_s:
                flush()
                last_flush = time.monotonic()
            if max_events is not None and sent >= max_events:
                break
        flush()
    finally:
        producer.flush()
        producer.close()
    return sent


def load_file(path: str, bootstrap: str, topic: str, per_message: int = 1000,
              client_config: Mapping[str, Any] | None = None) -> int:
    """Write a recorded events file (JSON Lines, plain or gzip) to a topic in its order: JSON arrays of
    ``per_message`` events spread round-robin over the partitions, as a fleet of gateways spreads them.
    Returns the number of events written. Lines are passed on unparsed (a recorded file is the
    gateways' output): a line that is not JSON makes its whole array a dead letter."""
    from backtest.replay import line_chunks, open_events

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20, acks=1,
                             max_request_size=8 << 20, **(client_config or {}))
    parts = sorted(producer.partitions_for(topic) or [0])
    n = sent = 0
    try:
        with open_events(path) as f:
            for lines in line_chunks(f, per_message):
                producer.send(topic, value=b"[" + b",".join(lines) + b"]", partition=parts[sent % len(parts)])
                sent += 1
                n += len(lines)
    finally:
        producer.flush()
        producer.close()
    return n
