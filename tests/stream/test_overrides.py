"""Manual decisions: validation, the pin that beats the detector, and `ratehound decision` end to end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis

from detectors.policy import Decision
from lab.embedded import free_port
from stream import cli
from stream.gateway import TokenBuckets, verdict
from stream.manual import manual_decision
from stream.overrides import OverrideError, build_override, parse_ttl, validate_key
from stream.sinks.redis import MANUAL_STRENGTH, RedisDecisionSink

ROOT = Path(__file__).resolve().parents[2]


def test_doctests():
    # stream/ is not among pytest's doctest paths: run this module's examples here
    import doctest

    import stream.overrides

    result = doctest.testmod(stream.overrides)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("15m", 900.0), ("1h", 3600.0), ("2d", 172800.0),
                                               ("1w", 604800.0), ("45", 45.0), ("0.5h", 1800.0), (" 10m ", 600.0)])
def test_parse_ttl(text, seconds):
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-1h", "0", "1h30m", "400d", "1e3s"])
def test_parse_ttl_rejects(text):
    with pytest.raises(OverrideError, match="--ttl"):
        parse_ttl(text)


@pytest.mark.parametrize(("scope", "key"), [("account", "acct_1"), ("network", "203.0.113.0/24"),
                                            ("network", "2001:db8:42::/48"), ("asn", "0"), ("asn", "4294967295"),
                                            ("payment", "pay_7f3a"), ("payment", "x" * 128)])
def test_valid_keys(scope, key):
    assert validate_key(scope, key) == key


@pytest.mark.parametrize(("scope", "key", "message"), [
    ("account", "", "1 to 128"),
    ("account", "x" * 129, "1 to 128"),
    ("account", "a\nb", "printable"),
    ("network", "203.0.113.7/24", "did you mean 203.0.113.0/24"),
    ("network", "2001:0db8:0042::/48", "did you mean 2001:db8:42::/48"),
    ("network", "203.0.113.0", "e.g. 203.0.113.0/24"),
    ("network", "203.0.0.0/16", "/24"),
    ("network", "2001:db8::/32", "/48"),
    ("network", "banana/24", "CIDR"),
    ("asn", "AS64500", "decimal"),
    ("asn", "064500", "decimal"),
    ("asn", "4294967296", "decimal"),
    ("payment", "", "payment '': expected 1 to 128"),
    ("payment", "p" * 129, "1 to 128"),
    ("payment", "pay\tx", "printable"),
    ("user", "x", "scope"),
])
def test_invalid_keys(scope, key, message):
    with pytest.raises(OverrideError, match=message):
        validate_key(scope, key)


def test_network_prefix_follows_the_config():
    assert validate_key("network", "203.0.0.0/16", ipv4_prefix=16) == "203.0.0.0/16"


def test_build_override(monkeypatch):
    monkeypatch.setenv("USER", "oncall")
    d = build_override("throttle", "asn", "64500", "15m", "manual:scraping", limit_rps=0.5, note="ticket 42",
                       now=100.0)
    assert (d.action, d.reason, d.limit_rps, d.ttl_s, d.expires_at) == ("throttle", "manual:scraping", 0.5, 900.0,
                                                                        1000.0)
    assert d.evidence == {"by": "oncall", "note": "ticket 42"} and d.config_version == "manual" and d.id
    for bad in [dict(action="throttle"), dict(action="block", limit_rps=1.0), dict(action="ban"),
                dict(action="block", reason="free text here"), dict(action="block", note="x" * 600)]:
        kw = {"reason": "x", **bad}
        with pytest.raises(OverrideError):
            build_override(kw.pop("action"), "account", "a1", "1h", kw.pop("reason"), **kw)


@pytest.mark.parametrize(("argv", "message"), [
    (["decision", "block", "network", "203.0.113.7/24", "--reason", "x"], "did you mean 203.0.113.0/24"),
    (["decision", "block", "asn", "AS1", "--reason", "x"], "decimal"),
    (["decision", "block", "account", "a1", "--ttl", "5x", "--reason", "x"], "--ttl"),
    (["decision", "throttle", "account", "a1", "--reason", "x"], "--limit-rps"),
    (["decision", "block", "account", "a1", "--reason", "x", "--limit-rps", "2"], "--limit-rps"),
    (["decision", "block", "account", "a1"], "--reason"),
    (["decision", "block", "user", "a1", "--reason", "x"], "invalid choice"),
    (["decision", "allow", "payment", "p" * 129, "--reason", "x"], "payment"),
    (["decision", "ban", "account", "a1", "--reason", "x"], "invalid choice"),
])
def test_bad_input_is_a_clear_error_and_exit_2(argv, message, capsys, monkeypatch):
    # unreachable Redis and Kafka: validation must stop before either is asked
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("KAFKA_BROKER", f"127.0.0.1:{free_port()}")
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "error" in err


# --------------------------------------------------------------------------- end to end


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", "decision", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def decision_env(broker, redis_url):
    topic = f"rh-test-decisions-{uuid.uuid4().hex[:8]}"
    broker.create_topics({topic: 1})
    env = dict(os.environ, KAFKA_BROKER=broker.bootstrap, REDIS_URL=redis_url, RATEHOUND_TOPIC_DECISIONS=topic,
               USER="oncall")
    env.pop("RATEHOUND_CONFIG", None)
    env.pop("RATEHOUND_REDIS_PREFIX", None)
    return env


def _detector_decision(scope: str, key: str, action: str, ttl_s: float) -> Decision:
    now = time.time()
    return Decision(ts=now, scope=scope, key=key, action=action, ttl_s=ttl_s, reason="campaign", score=0.9,
                    evidence={}, id=f"det-{key}", expires_at=now + ttl_s, config_version="v1")


async def _worker_writes(url: str, d: Decision, reassert: bool = False) -> None:
    """What a worker does: write a decision, then (optionally) its periodic re-assertion of what is in force."""
    sink = RedisDecisionSink(url)
    try:
        assert await sink.write([d])
        assert await sink.heartbeat("v1")
        if reassert:
            # a person's pin refuses the re-assertion, and the worker forgets its block for good
            assert await sink.reassert() == 0
            assert (d.scope, d.key) not in sink.active
    finally:
        await sink.close()


def _gateway_says(r: redis.Redis, scope: str, key: str, *more: tuple[str, str]) -> str:
    keys = [(scope, key), *more]
    values = r.mget([*(f"rh:d:{s}:{k}" for s, k in keys), "rh:heartbeat"])
    return verdict(keys, values, time.time(), TokenBuckets()).result


def _published(consume_all, broker, topic: str, n: int) -> list[tuple[bytes, dict]]:
    return [(rec.key, orjson.loads(rec.value)) for rec in consume_all(broker.bootstrap, topic, timeout=15,
                                                                      min_messages=n)]


@pytest.mark.integration
def test_allow_lifts_a_block_and_holds_against_the_worker(decision_env, redis_url, broker, consume_all):
    r = redis.Redis.from_url(redis_url)
    block = _detector_decision("account", "acct_fp", "block", ttl_s=3600.0)
    asyncio.run(_worker_writes(redis_url, block))
    assert _gateway_says(r, "account", "acct_fp") == "block"

    p = _run(["allow", "account", "acct_fp", "--ttl", "10m", "--reason", "false_positive", "--note", "customer NAT"],
             decision_env)
    assert p.returncode == 0, p.stderr
    doc = orjson.loads(r.get("rh:d:account:acct_fp"))
    assert (doc["action"], doc["manual"], doc["strength"], doc["by"]) == ("allow", True, MANUAL_STRENGTH, "oncall")
    assert 590_000 <= r.pttl("rh:d:account:acct_fp") <= 600_000
    assert _gateway_says(r, "account", "acct_fp") == "allow"

    # the worker still has its block in force and re-asserts it every 15 s: the pin holds
    asyncio.run(_worker_writes(redis_url, block, reassert=True))
    assert orjson.loads(r.get("rh:d:account:acct_fp"))["action"] == "allow"
    assert _gateway_says(r, "account", "acct_fp") == "allow"

    [(key, d)] = _published(consume_all, broker, decision_env["RATEHOUND_TOPIC_DECISIONS"], 1)
    assert key == b"account:acct_fp"
    assert (d["action"], d["reason"], d["evidence"], d["ttl_s"]) == (
        "allow", "manual:false_positive", {"by": "oncall", "note": "customer NAT"}, 600.0)
    assert orjson.loads(p.stdout) == d
    # and for local caches and people, as every decision
    logged = [orjson.loads(fields[b"d"]) for _, fields in r.xrange("rh:decisions:log")]
    assert [x["reason"] for x in logged] == ["campaign", "manual:false_positive", "campaign"]


@pytest.mark.integration
def test_block_imposes_wins_and_is_lifted(decision_env, redis_url, broker, consume_all):
    r = redis.Redis.from_url(redis_url)
    asyncio.run(_worker_writes(redis_url, _detector_decision("account", "someone", "throttle", 60.0)))  # heartbeat

    p = _run(["block", "network", "198.51.100.0/24", "--ttl", "2h", "--reason", "scraping", "--by", "ana"],
             decision_env)
    assert p.returncode == 0, p.stderr
    key = "rh:d:network:198.51.100.0/24"
    doc = orjson.loads(r.get(key))
    assert (doc["action"], doc["reason"], doc["manual"], doc["by"]) == ("block", "manual:scraping", True, "ana")
    assert _gateway_says(r, "network", "198.51.100.0/24") == "block"

    # a detector block with a shorter TTL would have replaced an ordinary block of equal strength
    asyncio.run(_worker_writes(redis_url, _detector_decision("network", "198.51.100.0/24", "block", 60.0)))
    assert orjson.loads(r.get(key)) == doc and r.pttl(key) > 7_000_000

    p = _run(["throttle", "account", "acct_t", "--ttl", "30s", "--reason", "slow_down", "--limit-rps", "0.5"],
             decision_env)
    assert p.returncode == 0, p.stderr
    assert orjson.loads(r.get("rh:d:account:acct_t"))["limit_rps"] == 0.5

    p = _run(["review", "account", "acct_r", "--reason", "look_at_this"], decision_env)
    assert p.returncode == 0, p.stderr
    assert r.get("rh:d:account:acct_r") is None  # review only flags

    p = _run(["allow", "network", "198.51.100.0/24", "--ttl", "1h", "--reason", "resolved"], decision_env)
    assert p.returncode == 0, p.stderr
    assert _gateway_says(r, "network", "198.51.100.0/24") == "allow"

    published = _published(consume_all, broker, decision_env["RATEHOUND_TOPIC_DECISIONS"], 4)
    assert [(k, d["action"]) for k, d in published] == [
        (b"network:198.51.100.0/24", "block"), (b"account:acct_t", "throttle"), (b"account:acct_r", "review"),
        (b"network:198.51.100.0/24", "allow")]
    assert published[0][1]["evidence"] == {"by": "ana", "note": "scraping"}


@pytest.mark.integration
def test_unreachable_redis_is_an_error_exit_1(decision_env):
    env = dict(decision_env, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    p = _run(["block", "account", "a1", "--reason", "x"], env)
    assert p.returncode == 1
    assert "failed" in p.stderr and "redis" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.integration
def test_allow_lifts_a_card_block_and_holds_against_the_worker_and_a_restart(decision_env, redis_url, broker,
                                                                              consume_all):
    r = redis.Redis.from_url(redis_url)
    card = _detector_decision("payment", "pay_fp", "block", ttl_s=3600.0)
    asyncio.run(_worker_writes(redis_url, card))
    # an account opened on the card a minute ago, never seen by the detector, is blocked through it
    assert _gateway_says(r, "account", "acct_new", ("payment", "pay_fp")) == "block"

    p = _run(["allow", "payment", "pay_fp", "--ttl", "2h", "--reason", "false_positive", "--note", "org card"],
             decision_env)
    assert p.returncode == 0, p.stderr
    doc = orjson.loads(r.get("rh:d:payment:pay_fp"))
    assert (doc["action"], doc["manual"], doc["strength"], doc["by"]) == ("allow", True, MANUAL_STRENGTH, "oncall")
    assert _gateway_says(r, "account", "acct_new", ("payment", "pay_fp")) == "allow"

    # the worker re-asserts its block, and the detector decides on the card again (a later, longer block): the
    # pin holds against both
    asyncio.run(_worker_writes(redis_url, card, reassert=True))
    asyncio.run(_worker_writes(redis_url, _detector_decision("payment", "pay_fp", "block", ttl_s=86400.0)))
    assert orjson.loads(r.get("rh:d:payment:pay_fp"))["action"] == "allow"

    [(key, published)] = _published(consume_all, broker, decision_env["RATEHOUND_TOPIC_DECISIONS"], 1)
    assert key == b"payment:pay_fp" and published["scope"] == "payment"

    # Redis restarts empty: a worker that read the lift back from the topic pins it again
    async def worker_after_restart() -> None:
        sink = RedisDecisionSink(redis_url)
        try:
            lift = manual_decision(orjson.dumps(published))
            assert lift is not None
            sink.hold(lift)
            await sink.write([card])  # the detector's block, as it still holds it: gives way to the person's
            r.flushdb()
            assert await sink.reassert() == 0
            assert await sink.heartbeat("v1")
        finally:
            await sink.close()

    asyncio.run(worker_after_restart())
    assert orjson.loads(r.get("rh:d:payment:pay_fp"))["action"] == "allow"
    assert _gateway_says(r, "account", "acct_new", ("payment", "pay_fp")) == "allow"
