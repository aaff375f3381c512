"""End to end through a real worker: embedded broker in, decisions out in Redis, Kafka and /metrics."""

from __future__ import annotations

import time

import orjson
import pytest
import redis
from kafka import KafkaProducer

from lab.embedded import wait_until

pytestmark = pytest.mark.integration


def _event(i: int, account: str, ip: str, ts: float, **kw) -> dict:
    ev = {"event_id": f"{account}-{i}", "ts": ts, "account_id": account, "ip": ip, "asn": 7922,
          "user_agent": "sdk-python/0.42.0", "input_tokens": 400, "output_tokens": 3000,
          "account_created_ts": ts - 3600.0, "payment_fp": "pay_shared_1", "prompt_fp": "0123456789abcdef"}
    ev.update(kw)
    return ev


def _campaign(n_accounts: int, now: float) -> list[dict]:
    """Young accounts sharing a card and a prompt template from many networks, harvesting long answers."""
    return [_event(i, f"acct_camp_{i}", f"203.0.{i}.7", now + i * 0.01) for i in range(n_accounts)]




@pytest.fixture
def producer(broker):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
    yield p
    p.close()


def test_campaign_reaches_redis_topic_and_metrics(start_worker, redis_url, producer, broker, consume_all):
    w = start_worker(redis_url)
    now = time.time()
    events = _campaign(12, now)
    # one JSON array for the whole batch, as a batching gateway sends it
    producer.send(w.topics["requests"], value=orjson.dumps(events))
    producer.flush()

    r = redis.Redis.from_url(redis_url)
    # the first accounts only build the cluster; later ones join a known campaign and are blocked
    last = events[-1]["account_id"]
    raw = wait_until(lambda: r.get(f"rh:d:account:{last}"))
    assert raw is not None, "no decision in Redis"
    doc = orjson.loads(raw)
    assert doc["action"] == "block" and doc["reason"] == "campaign"
    ttl_ms = r.pttl(f"rh:d:account:{last}")
    assert 0 < ttl_ms <= 3600 * 1000

    decisions = [orjson.loads(rec.value) for rec in consume_all(broker.bootstrap, w.topics["decisions"], timeout=10,
                                                                min_messages=1)]
    assert any(d["key"] == last and d["action"] == "block" for d in decisions)
    for d in decisions:  # the contract's form
        assert {"ts", "scope", "key", "action", "ttl_s", "reason", "score", "evidence"} <= d.keys()

    assert wait_until(lambda: w.metric("ratehound_events_total", outcome="processed") >= 12)
    assert w.metric("ratehound_decisions_total", scope="account", action="block", reason="campaign") >= 1
    assert w.metric("ratehound_event_to_decision_seconds_count") >= 1
    assert r.get("rh:heartbeat") is not None or wait_until(lambda: r.get("rh:heartbeat"), timeout=10)
    # no metric label carries an account id or an address
    text = w.metrics_text()
    assert "acct_camp" not in text and "203.0." not in text


def test_malformed_input_goes_to_dlq_and_duplicates_count_once(start_worker, redis_url, producer, broker,
                                                                 consume_all):
    w = start_worker(redis_url)
    now = time.time()
    good = _event(1, "acct_plain", "198.51.100.9", now, payment_fp="pay_own", account_created_ts=now - 9e7)
    producer.send(w.topics["requests"], value=b"{not json")
    producer.send(w.topics["requests"], value=orjson.dumps({"event_id": "x", "ts": now}))  # missing fields
    producer.send(w.topics["requests"], value=orjson.dumps(dict(good, ip="999.1.1.1", event_id="bad-ip")))
    producer.send(w.topics["requests"], value=orjson.dumps(dict(good, ts=now + 86400, event_id="future")))
    producer.send(w.topics["requests"], value=orjson.dumps(good))
    producer.send(w.topics["requests"], value=orjson.dumps(good))  # a duplicate delivery
    producer.flush()

    dlq = consume_all(broker.bootstrap, w.topics["dlq"], timeout=20, min_messages=4)
    reasons = sorted(orjson.loads(rec.value)["reason"] for rec in dlq)
    assert reasons == ["bad_ip", "future_ts", "not_json", "schema"]
    assert all(orjson.loads(rec.value)["detail"] for rec in dlq)
    assert wait_until(lambda: w.metric("ratehound_events_total", outcome="processed") == 1)
    assert wait_until(lambda: w.metric("ratehound_events_total", outcome="duplicate") == 1)
    assert w.metric("ratehound_dlq_total", reason="not_json") == 1
    assert w.metric("ratehound_events_total", outcome="rejected") == 4
    assert w.proc.poll() is None  # still running


def test_restarted_worker_resumes_account_state_from_its_table(start_worker, redis_url, producer, broker):
    w = start_worker(redis_url, partitions=1)
    now = time.time()
    for i in range(5):
        ev = _event(i, "acct_resume", "198.51.100.20", now + i, payment_fp="pay_resume",
                    account_created_ts=now - 9e7)
        producer.send(w.topics["requests"], value=orjson.dumps(ev))
        producer.flush()  # one record per batch: tansu may skip the rest of a batch on resume
    assert wait_until(lambda: w.metric("ratehound_events_total", outcome="processed") == 5)
    time.sleep(2.5)  # two snapshot intervals (1 s in tests)
    w.stop()  # SIGTERM: drains and commits

    w2 = start_worker(redis_url, partitions=1, reuse=w)
    assert w2.metric("ratehound_state_restored_total", kind="account") == 0
    ev = _event(9, "acct_resume", "198.51.100.20", now + 9, payment_fp="pay_resume", account_created_ts=now - 9e7)
    producer.send(w.topics["requests"], value=orjson.dumps(ev))
    producer.flush()
    assert wait_until(lambda: w2.metric("ratehound_events_total", outcome="processed") >= 1)
    # the old events were committed, not re-read; the account came back from the table
    assert w2.metric("ratehound_events_total", outcome="processed") == 1
    assert w2.metric("ratehound_state_restored_total", kind="account") == 1


def _healthz(w) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}/healthz", timeout=2) as r:
        return orjson.loads(r.read())


def test_web_serves_metrics_and_health_but_no_table_pages(start_worker, redis_url):
    import urllib.error
    import urllib.request

    w = start_worker(redis_url)
    assert "ratehound_events_total" in w.metrics_text()
    assert _healthz(w)["config_version"] == "default"
    # Up is not reading: health says what each consumer group has assigned (all of it, one worker).
    every = list(range(w.partitions))
    assert wait_until(lambda: _healthz(w)["reading"] == {"requests": every, "by_account": every, "by_group": every},
                      timeout=30)
    for path in ("/table/account_state/", "/router/", "/graph/", "/stats/", "/performance/"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}{path}", timeout=2)
        assert e.value.code == 404, path


def test_thresholds_reload_without_restart_and_bad_files_are_rejected(start_worker, redis_url, tmp_path):
    cfg = tmp_path / "thresholds.yaml"
    cfg.write_text("version: v1\n")
    w = start_worker(redis_url, config=str(cfg))
    assert _healthz(w)["config_version"].startswith("v1@")
    pid = w.proc.pid

    cfg.write_text("version: v2\npolicy:\n  rules:\n    campaign: {shadow: true}\n")
    assert wait_until(lambda: _healthz(w)["config_version"].startswith("v2@"), timeout=15)
    version = _healthz(w)["config_version"]
    assert w.metric("ratehound_config_info", version=version) == 1
    assert w.metric("ratehound_config_reloads_total", result="ok") == 1

    cfg.write_text("version: v3\nnetwork:\n  min_accounts: 0\n")  # invalid: must be >= 1
    assert wait_until(lambda: w.metric("ratehound_config_reloads_total", result="error") == 1, timeout=15)
    assert _healthz(w)["config_version"] == version  # the last good config stays in force
    assert w.proc.pid == pid and w.proc.poll() is None


def test_shadow_rule_publishes_review_and_enforces_nothing(start_worker, redis_url, producer, broker, consume_all,
                                                           tmp_path):
    cfg = tmp_path / "thresholds.yaml"
    cfg.write_text("version: shadowed\npolicy:\n  rules:\n    campaign: {shadow: true}\n"
                   "    proxy_harvester: {shadow: true}\n    payment_campaign: {shadow: true}\n")
    w = start_worker(redis_url, config=str(cfg))
    events = _campaign(12, time.time())
    producer.send(w.topics["requests"], value=orjson.dumps(events))
    producer.flush()
    decisions = [orjson.loads(r.value) for r in consume_all(broker.bootstrap, w.topics["decisions"], timeout=20,
                                                            min_messages=1)]
    campaign = [d for d in decisions if d["reason"] == "campaign"]
    assert campaign and all(d["action"] == "review" and d["shadow"] for d in campaign)
    r = redis.Redis.from_url(redis_url)
    assert not [k for k in r.scan_iter("rh:d:account:*")]  # nothing for the gateway to enforce
    assert w.metric("ratehound_decisions_total", scope="account", action="review", reason="campaign") >= 1


def test_sigterm_right_after_a_batch_stops_promptly_and_resumes_exactly(start_worker, redis_url, producer):
    # Input is acknowledged only once a snapshot holds it; a SIGTERM in between must neither hang
    # (Faust waiting for those acks) nor lose or double-count the batch.
    w = start_worker(redis_url, partitions=1)
    now = time.time()
    for i in range(3):
        producer.send(w.topics["requests"], value=orjson.dumps(_event(i, "acct_term", "198.51.100.30", now + i,
                                                                      account_created_ts=now - 9e7)))
        producer.flush()
    assert wait_until(lambda: w.metric("ratehound_events_total", outcome="processed") == 3, every=0.05)
    t0 = time.monotonic()
    w.stop(timeout=60)
    assert w.proc.returncode == 0  # it exited by itself, not killed
    assert time.monotonic() - t0 < 15

    w2 = start_worker(redis_url, partitions=1, reuse=w)
    producer.send(w.topics["requests"], value=orjson.dumps(_event(9, "acct_term", "198.51.100.30", now + 9,
                                                                  account_created_ts=now - 9e7)))
    producer.flush()
    assert wait_until(lambda: w2.metric("ratehound_events_total", outcome="processed") >= 1)
    time.sleep(2.0)
    # the shutdown snapshot held the three: whatever of them is read again is skipped, never re-counted
    assert w2.metric("ratehound_events_total", outcome="processed") == 1
    assert w2.metric("ratehound_state_restored_total", kind="account") == 1


def _decide(w, broker, redis_url: str, *args: str) -> None:
    """``ratehound decision ...`` against this worker's decisions topic, as an operator runs it."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, KAFKA_BROKER=broker.bootstrap, REDIS_URL=redis_url, USER="oncall",
               RATEHOUND_TOPIC_DECISIONS=w.topics["decisions"])
    done = subprocess.run([sys.executable, "-m", "stream.cli", "decision", *args], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_manual_decisions_survive_a_redis_that_restarts_empty(start_worker, own_redis, producer, broker):
    w = start_worker(own_redis.url)
    r = redis.Redis.from_url(own_redis.url)
    producer.send(w.topics["requests"], value=orjson.dumps(_campaign(12, time.time())))
    producer.flush()
    blocked = lambda: sorted(k.decode().rsplit(":", 1)[1] for k in r.keys("rh:d:account:acct_camp_*"))  # noqa: E731
    assert wait_until(lambda: len(blocked()) >= 2), "the campaign made fewer than two blocks"
    in_force = wait_until(lambda: w.metric("ratehound_active_enforcements", scope="account"), timeout=15)
    assert in_force >= 2
    lifted, kept = blocked()[:2]

    _decide(w, broker, own_redis.url, "allow", "account", lifted, "--ttl", "10m", "--reason", "false_positive")
    _decide(w, broker, own_redis.url, "block", "account", "acct_by_hand", "--ttl", "10m", "--reason", "stolen_key")
    # a block lifted by hand is no longer counted as in force
    assert wait_until(lambda: w.metric("ratehound_active_enforcements", scope="account") == in_force - 1,
                      timeout=20), w.metric("ratehound_active_enforcements", scope="account")

    own_redis.restart()  # empty: every decision gone
    assert r.get(f"rh:d:account:{lifted}") is None
    doc = lambda key: orjson.loads(r.get(f"rh:d:account:{key}") or b"{}")  # noqa: E731
    # within one re-assertion period (15 s): the people's decisions as pins, and the detector's own
    assert wait_until(lambda: doc("acct_by_hand") and doc(lifted) and doc(kept), timeout=30)
    assert (doc("acct_by_hand")["action"], doc("acct_by_hand")["manual"]) == ("block", True)
    assert (doc(lifted)["action"], doc(lifted)["manual"], doc(lifted)["by"]) == ("allow", True, "oncall")
    assert doc(kept)["action"] == "block" and "manual" not in doc(kept)
    assert 500_000 < r.pttl("rh:d:account:acct_by_hand") <= 600_000  # its own expiry, not extended
