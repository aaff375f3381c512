"""The gateway: the pure verdict on what Redis returned, then the real thing behind a real nginx."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from detectors.network import NetworkKeys
from detectors.policy import Decision
from lab.embedded import EmbeddedRedis, free_port, wait_until
from stream.gateway import Gateway, TokenBuckets, Verdict, degraded, lookup_keys, verdict
from stream.sinks.redis import RedisDecisionSink, gateway_value

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "ratehound.conf"
HB = b'{"ts": 1.0, "config_version": "v1"}'
NOW = 1_790_000_000.0
GATEWAY_TIMEOUT_MS, NGINX_CHECK_TIMEOUT_MS = 500, 2000


def _decision(scope: str, key: str, action: str, ttl_s: float = 600.0, reason: str = "campaign",
              limit_rps: float | None = None, ts: float = NOW) -> Decision:
    return Decision(ts=ts, scope=scope, key=key, action=action, ttl_s=ttl_s, reason=reason, score=0.9, evidence={},
                    limit_rps=limit_rps, id=f"{scope}-{key}-{action}", expires_at=ts + ttl_s, config_version="v1")


def _value(scope: str, key: str, action: str, **kw) -> bytes:
    return gateway_value(_decision(scope, key, action, **kw))


KEYS = [("account", "a1"), ("network", "203.0.113.0/24"), ("asn", "64500")]


def _verdict(values: list[bytes | None], now: float = NOW + 10.0, buckets: TokenBuckets | None = None,
             heartbeat: bytes | None = HB):
    return verdict(KEYS, [*values, heartbeat], now, TokenBuckets() if buckets is None else buckets)


def test_doctests():
    # stream/ is not among pytest's doctest paths: run this module's examples here
    import doctest

    import stream.gateway

    result = doctest.testmod(stream.gateway)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- the pure verdict


def test_nothing_in_force_allows():
    v = _verdict([None, None, None])
    assert (v.result, v.status, v.headers) == ("allow", 200, {})


def test_account_block_is_429_with_retry_after_and_reason():
    v = _verdict([_value("account", "a1", "block", ttl_s=600.0), None, None], now=NOW + 10.0)
    assert (v.result, v.status) == ("block", 429)
    assert v.headers == {"Retry-After": "590", "X-Ratehound-Action": "block", "X-Ratehound-Scope": "account",
                         "X-Ratehound-Reason": "campaign"}


def test_retry_after_is_at_least_one_second():
    v = _verdict([_value("account", "a1", "block", ttl_s=10.2), None, None], now=NOW + 10.0)
    assert v.headers["Retry-After"] == "1"


def test_expired_decision_is_ignored():
    # Redis expires keys itself; a value read at the edge of its expiry must not block.
    assert _verdict([_value("account", "a1", "block", ttl_s=5.0), None, None], now=NOW + 5.0).result == "allow"


def test_a_card_block_stops_an_account_never_seen():
    keys = lookup_keys("acct_opened_just_now", "203.0.113.7", "", NetworkKeys(), payment="pay_7f3a")
    assert keys == [("account", "acct_opened_just_now"), ("network", "203.0.113.0/24"), ("payment", "pay_7f3a")]
    card = _value("payment", "pay_7f3a", "block", ttl_s=600.0, reason="payment_campaign")
    v = verdict(keys, [None, None, card, HB], NOW + 10.0, TokenBuckets())
    assert (v.result, v.status) == ("block", 429)
    assert v.headers == {"Retry-After": "590", "X-Ratehound-Action": "block", "X-Ratehound-Scope": "payment",
                         "X-Ratehound-Reason": "payment_campaign"}


def test_the_strongest_action_wins_across_account_and_card():
    keys = [("account", "a1"), ("payment", "pay_7f3a")]
    thr = _value("account", "a1", "throttle", limit_rps=100.0)
    card = _value("payment", "pay_7f3a", "block", ttl_s=60.0, reason="payment_campaign")
    assert verdict(keys, [thr, card, HB], NOW + 10.0, TokenBuckets()).headers["X-Ratehound-Scope"] == "payment"
    card_thr = _value("payment", "pay_7f3a", "throttle", limit_rps=100.0)
    block = _value("account", "a1", "block")
    assert verdict(keys, [block, card_thr, HB], NOW + 10.0, TokenBuckets()).headers["X-Ratehound-Scope"] == "account"


@pytest.mark.parametrize("payment", ["", "p" * 129])
def test_without_a_card_nothing_more_is_looked_up(payment):
    nk = NetworkKeys()
    assert lookup_keys("a1", "203.0.113.7", "64500", nk, payment=payment) == lookup_keys("a1", "203.0.113.7",
                                                                                          "64500", nk)


@pytest.mark.parametrize(("index", "scope"), [(1, "network"), (2, "asn")])
def test_network_and_asn_blocks(index, scope):
    values: list[bytes | None] = [None, None, None]
    values[index] = _value(scope, KEYS[index][1], "block", reason="network_fanout")
    v = _verdict(values)
    assert (v.status, v.headers["X-Ratehound-Scope"], v.headers["X-Ratehound-Reason"]) == (429, scope,
                                                                                          "network_fanout")


def test_the_latest_block_sets_retry_after_and_beats_a_throttle():
    v = _verdict([_value("account", "a1", "throttle", limit_rps=100.0),
                  _value("network", "203.0.113.0/24", "block", ttl_s=100.0),
                  _value("asn", "64500", "block", ttl_s=1000.0)])
    assert (v.result, v.headers["X-Ratehound-Scope"], v.headers["Retry-After"]) == ("block", "asn", "990")


def test_throttle_under_the_limit_passes_and_over_it_is_429():
    buckets = TokenBuckets()
    thr = [_value("account", "a1", "throttle", limit_rps=2.0, reason="account_burst"), None, None]
    assert [_verdict(thr, now=NOW + 1.0, buckets=buckets).status for _ in range(2)] == [200, 200]
    v = _verdict(thr, now=NOW + 1.0, buckets=buckets)
    assert (v.result, v.status) == ("throttle", 429)
    assert v.headers == {"Retry-After": "1", "X-Ratehound-Action": "throttle", "X-Ratehound-Scope": "account",
                         "X-Ratehound-Reason": "account_burst"}
    # half a second later one token has come back
    assert _verdict(thr, now=NOW + 1.5, buckets=buckets).status == 200
    assert _verdict(thr, now=NOW + 1.5, buckets=buckets).status == 429


def test_throttle_lets_about_limit_rps_through():
    buckets = TokenBuckets()
    thr = [_value("account", "a1", "throttle", limit_rps=5.0), None, None]
    passed = sum(_verdict(thr, now=NOW + i * 0.01, buckets=buckets).status == 200 for i in range(1000))  # 10 s
    assert 5 * 10 <= passed <= 5 * 10 + 5 + 1  # the rate, plus one second's burst


def test_slow_throttle_retry_after_is_the_wait_for_the_next_token():
    buckets = TokenBuckets()
    thr = [_value("account", "a1", "throttle", limit_rps=0.2), None, None]
    assert _verdict(thr, buckets=buckets).status == 200
    assert _verdict(thr, buckets=buckets).headers["Retry-After"] == "5"


def test_throttle_without_a_limit_stops_everything():
    raw = orjson.dumps({"action": "throttle", "reason": "x", "expires_at": NOW + 60.0})
    v = _verdict([raw, None, None], now=NOW)
    assert (v.result, v.status, v.headers["Retry-After"]) == ("throttle", 429, "60")


def test_network_throttle_refusal_does_not_use_the_accounts_tokens():
    buckets = TokenBuckets()
    values = [_value("account", "a1", "throttle", limit_rps=10.0),
              _value("network", "203.0.113.0/24", "throttle", limit_rps=1.0), None]
    assert _verdict(values, buckets=buckets).status == 200
    refused = _verdict(values, buckets=buckets)
    assert (refused.status, refused.headers["X-Ratehound-Scope"]) == (429, "network")
    # the account's bucket still has 9 of its 10 tokens
    assert buckets.take([("account", "a1", 10.0)], now=NOW + 10.0) == 0.0


@pytest.mark.parametrize("action", ["review", "allow"])
def test_review_and_allow_pass(action):
    assert _verdict([_value("account", "a1", action), None, None]).result == "allow"


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"action": "block"}', b'{"action": "block", "expires_at": "x"}'])
def test_unreadable_values_pass(raw):
    assert _verdict([raw, None, None]).result == "allow"


def test_missing_heartbeat_fails_open_even_with_a_block():
    v = _verdict([_value("account", "a1", "block"), None, None], heartbeat=None)
    assert (v.result, v.status, v.headers) == ("degraded", 200, {"X-Ratehound-Degraded": "stale"})


@pytest.mark.parametrize("reason", ["redis-down", "redis-slow"])
def test_redis_failures_fail_open(reason):
    v = degraded(reason)
    assert (v.result, v.status, v.headers) == ("degraded", 200, {"X-Ratehound-Degraded": reason})


def test_reason_cannot_break_a_header():
    raw = orjson.dumps({"action": "block", "reason": "evil\r\nSet-Cookie: x=1", "expires_at": NOW + 60.0})
    assert _verdict([raw, None, None], now=NOW).headers["X-Ratehound-Reason"] == "evilSet-Cookie: x=1"


def test_lookup_keys_match_the_detector():
    nk = NetworkKeys()
    assert lookup_keys("a1", "198.51.100.200", "007", nk) == [("account", "a1"), ("network", "198.51.100.0/24"),
                                                              ("asn", "7")]
    assert lookup_keys("a1", "::ffff:198.51.100.200", "", nk) == [("account", "a1"), ("network", "198.51.100.0/24")]
    assert lookup_keys("a1", "2001:db8:42:7::1", "", nk)[1] == ("network", "2001:db8:42::/48")
    assert lookup_keys("x" * 129, "", "99999999999", nk) == lookup_keys("", "", "\u00b2", nk) == []
    assert lookup_keys("", "fe80::1%eth0", "", nk) == [("network", nk.network_of("fe80::1%eth0"))]
    # the config's prefixes, exactly as the pipeline builds its NetworkKeys
    assert lookup_keys("", "198.51.100.200", "", NetworkKeys(16, 32)) == [("network", "198.51.0.0/16")]


def test_buckets_are_bounded():
    b = TokenBuckets(max_keys=100)
    for i in range(1000):
        b.take([("account", f"a{i}", 1.0)], now=0.0)
    assert len(b) == 100


def test_unreachable_redis_fails_open_and_is_counted():
    async def run():
        gw = Gateway(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5, backoff_s=60.0)
        try:
            first = await gw.check("a1", "203.0.113.7", "")
            second = await gw.check("a1", "203.0.113.7", "")  # within the backoff: Redis is not asked
            return first, second, gw.metrics
        finally:
            await gw.close()

    first, second, m = asyncio.run(run())
    assert first.headers == second.headers == {"X-Ratehound-Degraded": "redis-down"}
    sample = m.registry.get_sample_value
    assert sample("ratehound_gateway_degraded_total", {"reason": "redis-down"}) == 2
    assert sample("ratehound_gateway_checks_total", {"result": "degraded"}) == 2
    assert sample("ratehound_gateway_redis_seconds_count") == 1  # only the first one asked Redis


@contextlib.contextmanager
def _every_command(r) -> Iterator[Callable[[], list[list[str]]]]:
    """What the private Redis was asked, arguments and all: its slow log with a threshold of 0 µs records
    every command. Yields a function returning the commands since the previous call (oldest first)."""
    before = r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    r.config_set("slowlog-log-slower-than", 0)
    r.slowlog_reset()

    def since() -> list[list[str]]:
        entries = r.slowlog_get(1000)
        r.slowlog_reset()
        commands = [e["command"].decode().split(" ") for e in reversed(entries)]  # redis-py joins the args
        return [c for c in commands if c[0].upper() not in ("SLOWLOG", "CONFIG")]

    try:
        yield since
    finally:
        r.config_set("slowlog-log-slower-than", before)


@pytest.mark.integration
def test_a_card_block_covers_a_new_account_in_one_mget(redis_url):
    import redis

    r = redis.Redis.from_url(redis_url)
    _write(redis_url, _decision("payment", "pay_camp", "block", reason="payment_campaign", ts=time.time()),
           _decision("account", "acct_old", "throttle", limit_rps=1000.0, ts=time.time()))

    async def run(asked: Callable[[], list[list[str]]]) -> list[tuple]:
        gw = Gateway(redis_url, timeout_s=1.0)
        out = []
        try:
            await gw.check("acct_probe", "", "")  # the connection is made: what follows is the checks alone
            asked()
            for account, payment in (("acct_new", "pay_camp"), ("acct_new", ""), ("acct_old", "pay_camp"),
                                     ("acct_other", "pay_other")):
                v = await gw.check(account, "198.51.100.7", "64500", payment)
                out.append((v.result, v.headers.get("X-Ratehound-Scope"), asked()))
        finally:
            await gw.close()
        return out

    with _every_command(r) as asked:
        card, no_card, both, other = asyncio.run(run(asked))
    net_asn = ["rh:d:network:198.51.100.0/24", "rh:d:asn:64500"]
    # an account the detector never saw, billed to the blocked card: one MGET, the card's key in it
    assert card == ("block", "payment", [["MGET", "rh:d:account:acct_new", *net_asn, "rh:d:payment:pay_camp",
                                          "rh:heartbeat"]])
    # no card given: as before, the account, its network and its ASN only
    assert no_card == ("allow", None, [["MGET", "rh:d:account:acct_new", *net_asn, "rh:heartbeat"]])
    # the block on the card beats the account's own throttle
    assert both[:2] == ("block", "payment") and len(both[2]) == 1
    assert other[:2] == ("allow", None) and len(other[2]) == 1
    # a card someone lifted with `ratehound decision allow payment ...` reads as allow
    r.set("rh:d:payment:pay_camp", orjson.dumps({"action": "allow", "manual": True, "strength": 10,
                                                 "expires_at": time.time() + 60}))

    async def lifted() -> str:
        gw = Gateway(redis_url, timeout_s=1.0)
        try:
            return (await gw.check("acct_new", "198.51.100.7", "", "pay_camp")).result
        finally:
            await gw.close()

    assert asyncio.run(lifted()) == "allow"


@pytest.mark.integration
def test_a_live_workers_card_block_stops_the_cards_next_account(start_worker, redis_url, broker):
    import redis
    from kafka import KafkaProducer

    w = start_worker(redis_url)
    now = time.time()
    # young accounts on one card, one prompt template, many networks, harvesting; they come back a second later
    events = [{"event_id": f"camp{i}-{r}", "ts": now + r + i * 0.01, "account_id": f"acct_camp_{i}",
               "ip": f"203.0.{i}.7", "asn": 7922, "user_agent": "sdk-python/0.42.0", "input_tokens": 400,
               "output_tokens": 3000, "account_created_ts": now - 3600.0, "payment_fp": "pay_live",
               "prompt_fp": "0123456789abcdef"} for r in range(2) for i in range(12)]
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1)
    try:
        producer.send(w.topics["requests"], value=orjson.dumps(events))
        producer.flush()
    finally:
        producer.close()

    r = redis.Redis.from_url(redis_url)
    raw = wait_until(lambda: r.get("rh:d:payment:pay_live"), timeout=30)
    assert raw is not None, "the worker wrote no block on the card"
    assert (orjson.loads(raw)["action"], orjson.loads(raw)["reason"]) == ("block", "payment_campaign")
    assert wait_until(lambda: r.get("rh:heartbeat"), timeout=10)

    async def check() -> tuple[Verdict, Verdict]:
        gw = Gateway(redis_url, timeout_s=1.0)
        try:
            # opened on the card after the campaign, first request, from a network of its own
            return (await gw.check("acct_opened_later", "198.51.100.50", "", "pay_live"),
                    await gw.check("acct_opened_later", "198.51.100.50", ""))
        finally:
            await gw.close()

    with_card, without = asyncio.run(check())
    assert (with_card.result, with_card.headers["X-Ratehound-Scope"]) == ("block", "payment")
    assert without.result == "allow"
    # the worker counts the card among what it has in force (sampled every 15 s)
    assert wait_until(lambda: w.metric("ratehound_active_enforcements", scope="payment") >= 1, timeout=30)


# --------------------------------------------------------------------------- nginx + gateway, for real


def _nginx_binary() -> str:
    """nginx with auth_request; a clear failure naming the package, never a skip (`make deps` installs it)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin")
    if found is None:
        pytest.fail("the gateway integration test needs a real nginx with auth_request: "
                    "install Debian's nginx-light (`make deps` does, as root)", pytrace=False)
    info = subprocess.run([found, "-V"], capture_output=True, text=True).stderr
    if "http_auth_request_module" not in info:
        pytest.fail(f"{found} was built without http_auth_request_module; install Debian's nginx-light",
                    pytrace=False)
    return found


class _Upstream(BaseHTTPRequestHandler):
    """The protected API: 200 "ok", echoing what it was told about the check."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = b"ok" + (b":" + body if body else b"")
        forbidden = self.path.startswith("/forbidden")  # the API's own 403
        self.send_response(403 if forbidden else 200)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("X-Seen-Account", self.headers.get("X-Account-Id", ""))
        self.send_header("X-Seen-Degraded", self.headers.get("X-Ratehound-Degraded", ""))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


class _Proc:
    """A child process with a log file, stopped with SIGTERM (SIGKILL after a timeout)."""

    def __init__(self, cmd: list[str], log: Path, **kw):
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._fh, stderr=subprocess.STDOUT, **kw)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _wait(pred: Callable[[], object], timeout: float, what: str, log: Callable[[], str] = lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            value = pred()
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s\n{log()}")


class Stack:
    """A dummy API, ``ratehound gateway`` and nginx with deploy/nginx/ratehound.conf, all on loopback."""

    def __init__(self, tmp: Path, nginx: str, redis_url: str):
        self.tmp, self.nginx, self.redis_url = tmp, nginx, redis_url
        self.upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        self.upstream.daemon_threads = True
        threading.Thread(target=self.upstream.serve_forever, daemon=True).start()
        self.gateway_port, self.port = free_port(), free_port()
        self.gateway: _Proc | None = None
        self.nginx_proc: _Proc | None = None

    def start(self) -> Stack:
        self.start_gateway()
        self.start_nginx()
        return self

    def start_gateway(self) -> None:
        # Deadlines for a loaded CI machine and a shared Redis (production: 20 ms here, 200 ms in nginx).
        self.gateway = _Proc([sys.executable, "-m", "stream.cli", "gateway", "--port", str(self.gateway_port),
                              "--redis", self.redis_url, "--timeout-ms", str(GATEWAY_TIMEOUT_MS)],
                             self.tmp / "gateway.log", cwd=ROOT)
        url = f"http://127.0.0.1:{self.gateway_port}/healthz"
        _wait(lambda: self.gateway.proc.poll() is None and urllib.request.urlopen(url, timeout=1).status == 200,
              30.0, "gateway /healthz", self.gateway.tail)

    def start_nginx(self) -> None:
        conf = NGINX_CONF.read_text()
        subs = [(r"server 127\.0\.0\.1:8081;", f"server 127.0.0.1:{self.gateway_port};"),
                (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{self.upstream.server_address[1]};"),
                (r"listen 8080;", f"listen 127.0.0.1:{self.port};"),
                (r"proxy_read_timeout 200ms;", f"proxy_read_timeout {NGINX_CHECK_TIMEOUT_MS}ms;")]
        for pattern, repl in subs:
            conf, n = re.subn(pattern, repl, conf)
            assert n == 1, f"{NGINX_CONF}: expected one {pattern!r}"
        prefix = self.tmp / "nginx"
        prefix.mkdir()
        (prefix / "ratehound.conf").write_text(conf)
        temp = "\n".join(f"    {d}_temp_path {prefix}/{d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        main = f"""
# generated by tests/stream/test_gateway.py around deploy/nginx/ratehound.conf
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
{temp}
    include {prefix}/ratehound.conf;
}}
"""
        (prefix / "nginx.conf").write_text(main)
        self.nginx_proc = _Proc([self.nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                 "-e", str(prefix / "error.log")], self.tmp / "nginx.out")

        def up() -> bool:
            assert self.nginx_proc.proc.poll() is None, f"nginx exited: {self.nginx_log()}"
            return self.request("a-probe")[0] == 200

        _wait(up, 20.0, "nginx", self.nginx_log)

    def nginx_log(self) -> str:
        text = ""
        for name in ("nginx.out", "nginx/error.log"):
            p = self.tmp / name
            if p.exists():
                text += f"--- {name}\n{p.read_text(errors='replace')[-3000:]}\n"
        return text

    def request(self, account: str | None, source: str = "127.0.0.1", method: str = "GET",
                body: bytes | None = None, path: str = "/v1/chat/completions",
                payment: str | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5, source_address=(source, 0))
        try:
            # as the hop in front sets them: the account, and the card it is billed to
            headers = {"X-Account-Id": account} if account else {}
            if payment:
                headers["X-Payment-Fp"] = payment
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        key = f"{name}{{{want}}}" if want else name
        with urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(f"{key} "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        for p in (self.nginx_proc, self.gateway):
            if p is not None:
                p.stop()
        self.upstream.shutdown()
        self.upstream.server_close()


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return _nginx_binary()


@pytest.fixture
def stack_factory(tmp_path, nginx_bin) -> Iterator[Callable[[str], Stack]]:
    stacks: list[Stack] = []

    def make(redis_url: str) -> Stack:
        s = Stack(tmp_path / f"stack{len(stacks)}", nginx_bin, redis_url)
        s.tmp.mkdir()
        stacks.append(s)
        return s.start()

    yield make
    for s in stacks:
        s.stop()


def _write(redis_url: str, *decisions: Decision, heartbeat: bool = True) -> None:
    async def run():
        sink = RedisDecisionSink(redis_url)
        try:
            assert await sink.write(decisions)
            if heartbeat:
                assert await sink.heartbeat("test")
        finally:
            await sink.close()

    asyncio.run(run())


@pytest.mark.integration
def test_nginx_block_network_block_and_pass(stack_factory, redis_url):
    s = stack_factory(redis_url)
    now = time.time()
    _write(redis_url, _decision("account", "acct_A", "block", ttl_s=600.0, reason="campaign", ts=now),
           _decision("network", "127.0.1.0/24", "block", ttl_s=300.0, reason="network_fanout", ts=now))

    status, headers, body = s.request("acct_A")
    assert status == 429, (status, headers, body, s.nginx_log())
    assert 590 <= int(headers["retry-after"]) <= 600
    assert (headers["x-ratehound-reason"], headers["x-ratehound-action"], headers["x-ratehound-scope"]) == (
        "campaign", "block", "account")
    assert json.loads(body)["error"]["type"] == "rate_limited"

    status, headers, body = s.request("acct_B")
    assert (status, body, headers["x-seen-account"], headers["x-seen-degraded"]) == (200, b"ok", "acct_B", "")
    # the request body still reaches the API after the (bodiless) check
    assert s.request("acct_B", method="POST", body=b'{"model": "m"}')[2] == b'ok:{"model": "m"}'
    # a 403 of the API's own is not mistaken for ratehound's
    assert s.request("acct_B", path="/forbidden")[:3:2] == (403, b"ok")

    # every account from the blocked /24 is refused; the same account elsewhere is not
    for account, source in (("acct_B", "127.0.1.5"), ("acct_C", "127.0.1.77"), (None, "127.0.1.200")):
        status, headers, _ = s.request(account, source=source)
        assert (status, headers.get("x-ratehound-scope"), headers.get("x-ratehound-reason")) == (
            429, "network", "network_fanout"), (account, source)
        assert 290 <= int(headers["retry-after"]) <= 300
    assert s.request("acct_C", source="127.0.2.5")[0] == 200

    assert s.metric("ratehound_gateway_checks_total", result="block") >= 4
    assert s.metric("ratehound_gateway_checks_total", result="allow") >= 3
    assert "auth request unexpected status" not in s.nginx_log()


@pytest.mark.integration
def test_nginx_card_block_covers_every_account_billed_to_it(stack_factory, redis_url):
    s = stack_factory(redis_url)
    _write(redis_url, _decision("payment", "pay_camp", "block", ttl_s=600.0, reason="payment_campaign",
                                ts=time.time()))

    status, headers, body = s.request("acct_opened_now", payment="pay_camp")
    assert status == 429, (status, headers, body, s.nginx_log())
    assert (headers["x-ratehound-scope"], headers["x-ratehound-reason"], headers["x-ratehound-action"]) == (
        "payment", "payment_campaign", "block")
    assert 590 <= int(headers["retry-after"]) <= 600
    # the same account without its card (no such hop in front), or on another card: through
    assert s.request("acct_opened_now")[:3:2] == (200, b"ok")
    assert s.request("acct_opened_now", payment="pay_honest")[:3:2] == (200, b"ok")
    # callers other than nginx give the card as ?payment=
    url = f"http://127.0.0.1:{s.gateway_port}/check?account=acct_x&payment=pay_camp"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=2)
    assert (refused.value.code, refused.value.headers["X-Ratehound-Scope"]) == (429, "payment")


@pytest.mark.integration
def test_nginx_throttle_lets_about_limit_rps_through(stack_factory, redis_url):
    s = stack_factory(redis_url)
    _write(redis_url, _decision("account", "acct_T", "throttle", ttl_s=120.0, reason="account_burst",
                                limit_rps=5.0, ts=time.time()))
    passed = refused = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        status, headers, _ = s.request("acct_T")
        if status == 200:
            passed += 1
        else:
            assert (status, headers["x-ratehound-action"], headers["x-ratehound-reason"]) == (
                429, "throttle", "account_burst")
            assert int(headers["retry-after"]) >= 1
            refused += 1
    elapsed = time.monotonic() - t0
    expected = 5.0 + 5.0 * elapsed  # one second's burst, then the rate
    assert refused > passed, (passed, refused)
    assert expected - 3 <= passed <= expected + 2, (passed, elapsed)
    assert s.request("acct_other")[0] == 200


@pytest.mark.integration
def test_nginx_fails_open_when_redis_or_gateway_fail(stack_factory, tmp_path):
    with EmbeddedRedis() as r:
        s = stack_factory(r.url)
        _write(r.url, _decision("account", "acct_A", "block", ts=time.time()))
        assert s.request("acct_A")[0] == 429

        r.kill()  # Redis down: refused connections
        status, headers, body = s.request("acct_A")
        assert (status, body, headers["x-seen-degraded"]) == (200, b"ok", "redis-down"), s.nginx_log()

        r.restart()  # back, but empty: no heartbeat, so the decisions are stale
        _wait(lambda: s.request("acct_A")[1]["x-seen-degraded"] == "stale", 5.0, "stale after restart")
        _write(r.url, _decision("account", "acct_A", "block", ts=time.time()))
        _wait(lambda: s.request("acct_A")[0] == 429, 5.0, "block after the worker is back")

        r.pause()  # Redis hangs: the gateway's deadline passes
        try:
            t = time.monotonic()
            status, headers, _ = s.request("acct_A")
            assert (status, headers["x-seen-degraded"]) == (200, "redis-slow")
            assert time.monotonic() - t < NGINX_CHECK_TIMEOUT_MS / 1000
        finally:
            r.resume()
        _wait(lambda: s.request("acct_A")[0] == 429, 5.0, "block after Redis answers again")
        for reason in ("redis-down", "redis-slow", "stale"):
            assert s.metric("ratehound_gateway_degraded_total", reason=reason) >= 1
        assert s.metric("ratehound_gateway_redis_seconds_count") >= 5

        s.gateway.stop()  # the gateway itself is gone: nginx fails open too
        status, headers, body = s.request("acct_A")
        assert (status, body, headers["x-seen-degraded"]) == (200, b"ok", "gateway-down"), s.nginx_log()
