"""The rules and the dashboard against a real Prometheus scraping a real worker.

A worker gets a small campaign, duplicates and malformed events; a ``prometheus``
process scrapes it every second with the rules loaded. Then every recording rule and
every dashboard query must return data through the HTTP API, every alert expression
must be accepted, and every rule must evaluate without error.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from deployfiles import RULES, dashboard_exprs, rules_of, substitute
from kafka import KafkaProducer

from lab.embedded import free_port

pytestmark = pytest.mark.integration

# Dashboard queries that are empty on a healthy, young worker, and why. Everything else must
# return data.
MAY_BE_EMPTY = {
    # no cap reached; the counter has no series until its first eviction
    "Evictions [A]": "ratehound_evicted_keys_total appears at the first eviction",
    # nothing restored: the worker started fresh
    "State restored and snapshot errors [A]": "ratehound_state_restored_total appears at the first restore",
    # no alert fires on a healthy system
    "annotation ratehound alerts": "no alert is firing",
}


class Prometheus:
    """A ``prometheus`` process on a free loopback port, scraping ``target`` every second."""

    def __init__(self, binary: str, tmp: Path, target: str, rules: Path):
        self.binary, self.tmp = binary, tmp
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "ratehound", "static_configs": [{"targets": [target]}]}],
        }))
        self.log_path = tmp / "prometheus.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> Prometheus:
        for _ in range(3):  # the free port can be taken before prometheus binds it
            self.port = free_port()
            log = open(self.log_path, "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
                time.sleep(0.2)
            self.stop()
        raise AssertionError(f"prometheus did not start: {self.log_path.read_text()[-3000:]}")

    def api(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400 on a bad query: its body says why
            return json.loads(exc.read())

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def producer(broker) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
    yield p
    p.close()


def _event(i: int, account: str, ip: str, ts: float, **kw: Any) -> dict[str, Any]:
    ev = {"event_id": f"{account}-{i}", "ts": ts, "account_id": account, "ip": ip, "asn": 7922,
          "user_agent": "sdk-python/0.42.0", "input_tokens": 400, "output_tokens": 3000,
          "account_created_ts": ts - 3600.0, "payment_fp": "pay_shared_1", "prompt_fp": "0123456789abcdef"}
    ev.update(kw)
    return ev


def _feed(producer: KafkaProducer, topic: str) -> None:
    """A campaign (young accounts, one card, one prompt, many networks: campaign blocks, and the
    card's block when they come back), an honest account with a duplicate delivery, and malformed
    events of four kinds."""
    now = time.time()
    campaign = [_event(r * 100 + i, f"acct_camp_{i}", f"203.0.{i}.7", now + r + i * 0.01)
                for r in range(2) for i in range(12)]
    producer.send(topic, value=orjson.dumps(campaign))
    good = _event(1, "acct_plain", "198.51.100.9", now, payment_fp="pay_own", account_created_ts=now - 9e7)
    producer.send(topic, value=orjson.dumps(good))
    producer.send(topic, value=orjson.dumps(good))
    producer.send(topic, value=b"{not json")
    producer.send(topic, value=orjson.dumps({"event_id": "x", "ts": now}))
    producer.send(topic, value=orjson.dumps(dict(good, ip="999.1.1.1", event_id="bad-ip")))
    producer.send(topic, value=orjson.dumps(dict(good, ts=now + 86400, event_id="future")))
    producer.flush()


def _wait_for(pred, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_rules_and_dashboard_return_data_from_a_live_worker(start_worker, redis_url, producer, prometheus_bin,
                                                           rules_doc, dashboard, tmp_path):
    worker = start_worker(redis_url)
    prom = Prometheus(prometheus_bin, tmp_path, f"127.0.0.1:{worker.web_port}", RULES).start()
    try:
        _feed(producer, worker.topics["requests"])

        # Scraped, with what the traffic produces: decisions, dead letters, latency, lag (every 5 s).
        def scraped() -> bool:
            return all(prom.query(q)["data"]["result"] for q in (
                'up{job="ratehound"} == 1',
                'ratehound_decisions_total{reason="campaign"} > 0',
                'ratehound_decisions_total{scope="payment"} > 0',
                'ratehound_dlq_total{reason="not_json"} > 0',
                'ratehound_events_total{outcome="duplicate"} > 0',
                "ratehound_event_to_decision_seconds_count > 0",
                "ratehound_consumer_lag_messages",
            ))
        assert _wait_for(scraped, timeout=40), "prometheus never scraped the worker's decisions, DLQ and lag"

        recording = {r["record"]: r["expr"] for r in rules_of(rules_doc) if "record" in r}
        alerts = {f"{r['alert']} ({r['labels']['severity']})": r["expr"] for r in rules_of(rules_doc) if "alert" in r}
        must_have_data = {f"recorded {name}": name for name in recording}
        must_have_data |= {f"rule {name}": expr for name, expr in recording.items()}
        must_have_data |= {f"dashboard {title}": substitute(expr) for title, expr in dashboard_exprs(dashboard).items()
                           if title not in MAY_BE_EMPTY}

        # Recording rules need a few evaluations after the first scrapes: retry until all have data.
        missing: dict[str, Any] = {}

        def all_have_data() -> bool:
            missing.clear()
            for label, expr in must_have_data.items():
                got = prom.query(expr)
                if got.get("status") != "success" or not got["data"]["result"]:
                    missing[label] = (expr, got.get("error") or "empty")
            return not missing
        assert _wait_for(all_have_data, timeout=20, every=1), "no data for:\n" + "\n".join(
            f"  {k}: {v[0]!r} -> {v[1]}" for k, v in missing.items())

        # Alerts legitimately return nothing here; Prometheus must still accept them.
        for title, expr in list(alerts.items()) + [(t, substitute(dashboard_exprs(dashboard)[t]))
                                                    for t in MAY_BE_EMPTY]:
            got = prom.query(expr)
            assert got["status"] == "success", f"{title}: {expr!r} -> {got.get('error')}"

        # Every rule evaluated, none with an error (e.g. many-to-many matching at run time).
        def all_evaluated() -> list[dict[str, Any]]:
            rules = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
            ok = len(rules) == len(rules_of(rules_doc)) and all(r["health"] == "ok" for r in rules)
            return rules if ok else []
        rules = _wait_for(all_evaluated, timeout=10)
        assert rules, [(r["name"], r["health"], r.get("lastError")) for g in prom.api("rules")["data"]["groups"]
                       for r in g["rules"] if r["health"] != "ok"]

        # A healthy worker fires nothing.
        firing = [a for a in prom.api("alerts")["data"]["alerts"] if a["state"] == "firing"]
        assert firing == [], firing
    finally:
        prom.stop()
