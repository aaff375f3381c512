"""The sinks (stream/sinks/): one interface, one way of counting, people's decisions held by the Redis sink."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis

from detectors.events import Reject
from detectors.policy import STRENGTH, Decision
from lab.embedded import free_port
from stream import metrics
from stream.records import dead_letters
from stream.sinks.base import Sink, SinkError
from stream.sinks.redis import MANUAL_STRENGTH, RedisDecisionSink
from stream.sinks.topics import DeadLetterSink, DecisionTopicSink


def _decision(key: str, action: str, ttl_s: float = 600.0, manual: bool = False, ts: float | None = None,
              scope: str = "account") -> Decision:
    ts = time.time() if ts is None else ts
    return Decision(ts=ts, scope=scope, key=key, action=action, ttl_s=ttl_s,
                    reason="manual:test" if manual else "campaign", score=0.0,
                    evidence={"by": "ana"} if manual else {}, limit_rps=1.0 if action == "throttle" else None,
                    id=f"{key}-{ts}", expires_at=ts + ttl_s, config_version="manual" if manual else "v1")


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_sink_is_one_of_the_sink_label_values():
    assert {RedisDecisionSink.name, DecisionTopicSink.name, DeadLetterSink.name} == set(metrics.SINKS)
    for sink in (RedisDecisionSink, DecisionTopicSink, DeadLetterSink):
        assert issubclass(sink, Sink) and sink.retry


def test_a_manual_strength_outranks_every_detector_strength():
    assert MANUAL_STRENGTH > max(STRENGTH.values())


class _Topic:
    """A Faust topic's send, failing on demand: what the topic sinks are handed."""

    def __init__(self, fail: bool = False):
        self.fail, self.sent = fail, []

    async def send(self, key: bytes | None, value: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.sent.append((key, value))


def test_topic_sinks_count_what_they_send_and_raise_what_they_cannot():
    d = _decision("a1", "block")
    ok_before = _sample("ratehound_sink_writes_total", sink="decisions", result="ok")
    sink = DecisionTopicSink(_Topic())
    assert asyncio.run(sink.write([d]))
    assert sink.topic.sent[0][0] == b"account:a1" and orjson.loads(sink.topic.sent[0][1])["key"] == "a1"
    assert _sample("ratehound_sink_writes_total", sink="decisions", result="ok") == ok_before + 1

    letters = dead_letters([Reject("bad_ip", "ip", b"{}")], "requests", 0, 7)
    dlq = DeadLetterSink(_Topic(fail=True))
    errors_before = _sample("ratehound_sink_writes_total", sink="dlq", result="error")
    with pytest.raises(SinkError, match="dlq topic"):  # the batch behind it must not be acknowledged
        asyncio.run(dlq.write(letters))
    assert _sample("ratehound_sink_writes_total", sink="dlq", result="error") == errors_before + 1
    assert _sample("ratehound_sink_up", sink="dlq") == 0 and not dlq.healthy
    asyncio.run(DeadLetterSink(_Topic()).write(letters))
    assert _sample("ratehound_sink_up", sink="dlq") == 1


def test_redis_sink_queues_while_down_and_says_why():
    async def run() -> RedisDecisionSink:
        sink = RedisDecisionSink(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
        try:
            assert not await sink.write([_decision("a1", "block"), _decision("a2", "throttle")])
        finally:
            await sink.close()
        return sink

    sink = asyncio.run(run())
    assert len(sink.queue) == 2 and not sink.healthy and sink.last_error
    assert _sample("ratehound_sink_queued", sink="redis") == 2


@pytest.mark.integration
def test_people_decisions_are_held_reasserted_and_not_counted_as_the_detectors(redis_url):
    r = redis.Redis.from_url(redis_url)

    async def run() -> None:
        sink = RedisDecisionSink(redis_url)
        try:
            now = time.time()
            await sink.write([_decision("lifted", "block"), _decision("kept", "block"),
                              _decision("10.0.0.0/24", "throttle", scope="network")])
            sink.count_active()
            assert _sample("ratehound_active_enforcements", scope="account") == 2
            sink.hold(_decision("lifted", "allow", manual=True, ts=now))
            sink.hold(_decision("lifted", "block", manual=True, ts=now - 60))  # an earlier person's: overtaken
            sink.hold(_decision("by_hand", "block", manual=True, ts=now))
            sink.hold(_decision("expired", "block", ttl_s=1.0, manual=True, ts=now - 10))
            sink.hold(_decision("flagged", "review", manual=True, ts=now))
            assert _sample("ratehound_active_enforcements", scope="account") == 1  # only "kept"
            assert set(sink.manual) == {("account", "lifted"), ("account", "by_hand")}
            await sink.write([_decision("by_hand", "block")])  # the detector agrees: still the person's key
            assert ("account", "by_hand") not in sink.active

            r.flushdb()  # Redis restarted empty
            assert await sink.reassert() == 2  # "kept" and the network
            lifted = orjson.loads(r.get("rh:d:account:lifted"))
            assert (lifted["action"], lifted["manual"], lifted["strength"]) == ("allow", True, MANUAL_STRENGTH)
            assert orjson.loads(r.get("rh:d:account:by_hand"))["manual"] is True
            assert orjson.loads(r.get("rh:d:account:kept"))["action"] == "block"
            assert r.get("rh:d:account:expired") is None and r.get("rh:d:account:flagged") is None

            # a later person's decision in Redis (not yet read back by this worker) is left alone
            r.set("rh:d:account:by_hand", orjson.dumps({"action": "allow", "manual": True, "ts": now + 5}))
            # and so is the runbooks' redis-cli pin, which carries no time
            r.set("rh:d:account:lifted", orjson.dumps({"action": "allow", "manual": True, "strength": 10}))
            await sink.reassert()
            assert orjson.loads(r.get("rh:d:account:by_hand"))["ts"] == now + 5
            assert "ts" not in orjson.loads(r.get("rh:d:account:lifted"))
        finally:
            await sink.close()

    asyncio.run(run())


def test_every_scope_is_a_value_of_the_scope_label():
    # the contract's scopes, each with its own active-enforcements series from the start
    assert metrics.SCOPES == ("account", "network", "asn", "payment")
    for scope in metrics.SCOPES:
        assert metrics.REGISTRY.get_sample_value("ratehound_active_enforcements", {"scope": scope}) is not None


@pytest.mark.integration
def test_a_payment_decision_is_written_like_every_scope(redis_url):
    r = redis.Redis.from_url(redis_url)

    async def run() -> None:
        sink = RedisDecisionSink(redis_url)
        try:
            now = time.time()
            card = _decision("pay_7f3a", "block", ttl_s=600.0, scope="payment", ts=now)
            assert await sink.write([card, _decision("pay_7f3a", "throttle", scope="payment", ts=now)])
            doc = orjson.loads(r.get("rh:d:payment:pay_7f3a"))
            assert (doc["action"], doc["strength"], doc["reason"]) == ("block", STRENGTH["block"], "campaign")
            # its absolute expiry, as every scope's: a weaker decision neither replaced nor extended it
            assert r.pexpiretime("rh:d:payment:pay_7f3a") == int(card.expires_at * 1000)
            assert r.get("rh:d:account:pay_7f3a") is None  # the card's id reaches no other scope's key
            sink.count_active()
            assert _sample("ratehound_active_enforcements", scope="payment") == 1

            r.flushdb()  # Redis restarted empty: the card's block comes back with the others
            assert await sink.reassert() == 1
            assert orjson.loads(r.get("rh:d:payment:pay_7f3a"))["action"] == "block"

            assert await sink.write([_decision("pay_7f3a", "allow", scope="payment", ts=now + 1)])
            assert r.get("rh:d:payment:pay_7f3a") is None
            sink.count_active()
            assert _sample("ratehound_active_enforcements", scope="payment") == 0
        finally:
            await sink.close()

    asyncio.run(run())
