"""Canary for the embedded broker and Redis: if these fail, every integration test will."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
from kafka import KafkaProducer

from lab.embedded import BrokerStartError, EmbeddedBroker, EmbeddedRedis, redis_reachable

pytestmark = pytest.mark.integration


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _process_gone(pid: int) -> bool:
    """Return True if ``pid`` no longer exists at all (i.e. it was reaped, not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_produce_one_per_batch_and_read_back_exactly(broker, consume_all):
    topic = _topic("canary")
    broker.create_topics({topic: 2})
    sent = set()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks="all")
    try:
        for i in range(50):
            key, value, partition = f"k{i}".encode(), f"v{i}".encode(), i % 2
            producer.send(topic, key=key, value=value, partition=partition)
            # One record per batch: tansu may skip the rest of a batch on resume.
            producer.flush()
            sent.add((key, value, partition))
    finally:
        producer.close()

    got = consume_all(broker.bootstrap, topic, timeout=15, min_messages=50)
    assert {(r.key, r.value, r.partition) for r in got} == sent
    assert len(got) == 50
    for p in (0, 1):
        assert sorted(r.offset for r in got if r.partition == p) == list(range(25))
    # Without min_messages it stops at the end offsets instead of waiting out the timeout.
    t0 = time.monotonic()
    assert len(consume_all(broker.bootstrap, topic, timeout=15)) == 50
    assert time.monotonic() - t0 < 10


def test_create_topics_is_idempotent(broker, consume_all):
    topic = _topic("idem")
    broker.create_topics({topic: 3})
    broker.create_topics({topic: 3})
    assert consume_all(broker.bootstrap, topic, timeout=5) == []


def test_broker_pause_resume(broker, consume_all):
    if not isinstance(broker, EmbeddedBroker):
        pytest.skip("pause/resume needs the embedded broker")
    topic = _topic("pause")
    broker.create_topics({topic: 1})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, request_timeout_ms=20000)
    try:
        producer.send(topic, value=b"before").get(timeout=10)
        broker.pause()
        try:
            assert _process_state(broker.pid) == "T"
            # Sent while frozen: must stay pending, then land once the broker continues.
            pending = producer.send(topic, value=b"during")
            time.sleep(1.0)
            assert not pending.is_done
        finally:
            broker.resume()
        pending.get(timeout=15)
        producer.send(topic, value=b"after").get(timeout=10)
    finally:
        producer.close()
    got = consume_all(broker.bootstrap, topic, timeout=10, min_messages=3)
    assert [r.value for r in got] == [b"before", b"during", b"after"]


def test_broker_lifecycle_and_clear_error_on_busy_port(broker):
    if not isinstance(broker, EmbeddedBroker):
        pytest.skip("needs the embedded broker")
    busy = EmbeddedBroker(port=broker.port, startup_timeout=5)
    try:
        with pytest.raises(BrokerStartError, match=r"(?s)tansu.*Address in use"):
            busy.start()
        assert busy.pid is None
    finally:
        busy.stop()  # removes the log dir a failed start leaves for inspection

    b = EmbeddedBroker().start()
    pid = b.pid
    assert b.url == f"kafka://127.0.0.1:{b.port}" and b.bootstrap == f"127.0.0.1:{b.port}"
    b.stop()
    b.stop()
    assert b.pid is None and _process_gone(pid)


def test_redis_kill_and_restart_comes_back_empty(own_redis):
    client = redis.Redis.from_url(own_redis.url)
    try:
        client.set("ratehound:canary", "1")
        assert client.get("ratehound:canary") == b"1"
        pid, port = own_redis.pid, own_redis.port

        own_redis.kill()
        assert _process_gone(pid)
        assert not redis_reachable(own_redis.url)

        own_redis.restart()
        assert own_redis.port == port and own_redis.pid != pid
        assert client.get("ratehound:canary") is None
    finally:
        client.close()


def test_redis_pause_resume(own_redis):
    own_redis.pause()
    try:
        assert not redis_reachable(own_redis.url, timeout=0.3)
    finally:
        own_redis.resume()
    assert redis_reachable(own_redis.url)


def test_embedded_redis_context_manager_cleans_up():
    with EmbeddedRedis() as r:
        pid, workdir = r.pid, r.workdir
        assert redis_reachable(r.url)
        assert r.url == f"redis://127.0.0.1:{r.port}/0"
    assert _process_gone(pid)
    assert not workdir.exists()


def test_redis_url_fixture_gives_empty_dedicated_db(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("ratehound:x", "1")
    finally:
        client.close()
