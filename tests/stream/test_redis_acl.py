"""deploy/redis/users.acl on a real redis-server: the detector writes only its own keys, the gateway only reads.

The sink and the gateway run their real code as their ACL users; anything the file
forgot to grant shows up as a refusal in Redis's ``ACL LOG``, which must stay empty
while they work.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from detectors.policy import Decision
from lab.embedded import LOOPBACK, EmbeddedRedis, RedisStartError
from stream.gateway import Gateway
from stream.sinks.redis import RedisDecisionSink

pytestmark = pytest.mark.integration

ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl"
PASSWORDS = {"ratehound-admin": "admin-pw", "ratehound-detector": "detector-pw", "ratehound-gateway": "gateway-pw"}
PLACEHOLDERS = {"#ADMIN_PASSWORD_SHA256": "ratehound-admin", "#DETECTOR_PASSWORD_SHA256": "ratehound-detector",
                "#GATEWAY_PASSWORD_SHA256": "ratehound-gateway"}


class AclRedis(EmbeddedRedis):
    """A private redis-server started with an ACL file; ``url`` is the admin's (the default user is off)."""

    def __init__(self, aclfile: Path, tls: Path | None = None, **kw) -> None:
        super().__init__(**kw)
        self.aclfile = aclfile
        self.tls = tls  # a directory made by _tls_files(): TLS only, client certificates required

    def _command(self) -> list[str]:
        cmd = [*super()._command(), "--aclfile", str(self.aclfile)]
        if self.tls is not None:
            t = self.tls
            port = cmd.index("--port") + 1
            cmd[port:port + 1] = ["0", "--tls-port", cmd[port], "--tls-cert-file", str(t / "server.pem"),
                                  "--tls-key-file", str(t / "server.key"), "--tls-ca-cert-file", str(t / "ca.pem"),
                                  "--tls-auth-clients", "yes"]
        return cmd

    def url_for(self, user: str, password: str | None = None) -> str:
        if self.tls is None:
            return f"redis://{user}:{password or PASSWORDS[user]}@{LOOPBACK}:{self.port}/0"
        t = self.tls
        return (f"rediss://{user}:{password or PASSWORDS[user]}@localhost:{self.port}/0?ssl_ca_certs={t}/ca.pem"
                f"&ssl_certfile={t}/client.pem&ssl_keyfile={t}/client.key")

    @property
    def url(self) -> str:
        return self.url_for("ratehound-admin")


def _filled_acl(tmp: Path) -> Path:
    """The deployed file with each placeholder replaced by the SHA-256 of that user's test password."""
    text = ACL_FILE.read_text()
    for placeholder, user in PLACEHOLDERS.items():
        assert placeholder in text, f"{placeholder} missing from {ACL_FILE}"
        text = text.replace(placeholder, "#" + hashlib.sha256(PASSWORDS[user].encode()).hexdigest())
    path = tmp / "users.acl"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    with AclRedis(_filled_acl(tmp_path_factory.mktemp("acl"))) as r:
        yield r


@pytest.fixture
def admin(acl_redis):
    client = redis.Redis.from_url(acl_redis.url)
    client.flushall()
    client.execute_command("ACL", "LOG", "RESET")
    yield client
    client.close()


def _client(acl_redis: AclRedis, user: str) -> redis.Redis:
    return redis.Redis.from_url(acl_redis.url_for(user), socket_timeout=5)


def _acl_log(admin: redis.Redis) -> list[dict]:
    entries = admin.execute_command("ACL", "LOG")
    return [{k.decode() if isinstance(k, bytes) else k: v for k, v in e.items()} if isinstance(e, dict)
            else dict(zip(e[::2], e[1::2], strict=True)) for e in entries]


def _decision(scope: str, key: str, action: str, ttl_s: float = 600.0, limit_rps: float | None = None) -> Decision:
    now = time.time()
    return Decision(ts=now, scope=scope, key=key, action=action, ttl_s=ttl_s, reason="campaign", score=0.9,
                    evidence={}, limit_rps=limit_rps, id=f"{scope}-{key}-{action}", expires_at=now + ttl_s,
                    config_version="v1")


def _refused(call) -> str:
    """Run one command that the ACL must refuse; return Redis's message."""
    with pytest.raises(ResponseError) as exc:
        call()
    msg = str(exc.value)
    # a command refused inside a Lua script reports itself in its own words
    assert isinstance(exc.value, NoPermissionError) or "NOPERM" in msg or "user executing the script can't" in msg, msg
    return msg


def test_the_deployed_file_refuses_to_start_with_its_placeholders():
    # nobody can go live with a password that is written in the repository
    with pytest.raises(RedisStartError, match="password hash must be exactly 64 characters"):
        AclRedis(ACL_FILE, startup_timeout=5).start()


def test_detector_runs_the_real_sink(acl_redis, admin):
    gateway = _client(acl_redis, "ratehound-gateway")
    listener = gateway.pubsub()
    listener.subscribe("rh:decisions")
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    admin.script_flush()  # so the sink has to SCRIPT LOAD its script, not only EVALSHA it

    decisions = [_decision("account", "a1", "block"), _decision("network", "203.0.113.0/24", "throttle", limit_rps=2.0),
                 _decision("account", "a2", "review"), _decision("account", "a3", "block")]
    lifted = _decision("account", "a3", "allow")

    async def run() -> tuple[bool, bool, int, bool, bool]:
        sink = RedisDecisionSink(acl_redis.url_for("ratehound-detector"), prefix="rh")
        try:
            wrote = await sink.write(decisions)
            wrote_allow = await sink.write([lifted])  # DEL of the key it had blocked
            reasserted = await sink.reassert()
            beat = await sink.heartbeat("v1")
            return wrote, wrote_allow, reasserted, beat, sink.healthy
        finally:
            await sink.close()

    assert asyncio.run(run()) == (True, True, 2, True, True)
    assert _acl_log(admin) == [], "the detector's ACL refused something the sink does"

    doc = orjson.loads(admin.get("rh:d:account:a1"))
    assert doc["action"] == "block" and 0 < admin.pttl("rh:d:account:a1") <= 600_000
    assert orjson.loads(admin.get("rh:d:network:203.0.113.0/24"))["limit_rps"] == 2.0
    assert admin.get("rh:d:account:a2") is None and admin.get("rh:d:account:a3") is None
    assert admin.xlen("rh:decisions:log") == 5
    assert orjson.loads(admin.get("rh:heartbeat"))["config_version"] == "v1" and 0 < admin.ttl("rh:heartbeat") <= 30
    published = [listener.get_message(timeout=2) for _ in range(5)]
    assert [orjson.loads(m["data"])["key"] for m in published] == ["a1", "203.0.113.0/24", "a2", "a3", "a3"]
    listener.close()
    gateway.close()


def test_detector_cannot_leave_its_keys_or_administer(acl_redis, admin):
    admin.set("other:key", "untouched")
    admin.set("rh:config", "untouched")  # the prefix alone is not enough: only rh:d:*, rh:heartbeat, the log
    foreign = admin.script_load("return redis.call('SET', 'other:key', 'overwritten')")
    own_keys = admin.script_load("return redis.call('SET', KEYS[1], 'x')")
    det = _client(acl_redis, "ratehound-detector")
    refusals = [
        lambda: det.set("other:key", "x"),
        lambda: det.set("rh:config", "x"),
        lambda: det.get("other:key"),
        lambda: det.delete("other:key"),
        lambda: det.xadd("other:stream", {"d": "x"}),
        lambda: det.publish("other-channel", "x"),
        lambda: det.flushall(),
        lambda: det.flushdb(),
        lambda: det.config_get("*"),
        lambda: det.config_set("appendonly", "no"),
        lambda: det.keys("*"),
        lambda: det.scan(),
        lambda: det.script_flush(),
        lambda: det.eval("return 1", 0),
        lambda: det.evalsha(own_keys, 1, "other:key"),   # declared key outside its patterns
        lambda: det.evalsha(foreign, 0),                  # a script's own calls are checked too
        lambda: det.execute_command("SELECT", 1),
        lambda: det.execute_command("ACL", "LIST"),
        lambda: det.execute_command("CLIENT", "KILL", "TYPE", "normal"),
        lambda: det.shutdown(),
    ]
    for call in refusals:
        _refused(call)
    assert admin.get("other:key") == b"untouched" and admin.get("rh:config") == b"untouched"
    assert admin.ping()
    det.close()


def test_gateway_reads_decisions_with_the_real_gateway_code(acl_redis, admin):
    async def write_then_check() -> list:
        sink = RedisDecisionSink(acl_redis.url_for("ratehound-detector"), prefix="rh")
        gw = Gateway(acl_redis.url_for("ratehound-gateway"), prefix="rh", timeout_s=1.0)
        try:
            assert await sink.write([_decision("account", "a1", "block"),
                                     _decision("network", "198.51.100.0/24", "throttle", limit_rps=0.001)])
            assert await sink.heartbeat("v1")
            return [await gw.check("a1", "203.0.113.7", ""), await gw.check("a9", "198.51.100.4", ""),
                    await gw.check("a9", "198.51.100.4", ""), await gw.check("a8", "192.0.2.1", "64500")]
        finally:
            await sink.close()
            await gw.close()

    blocked, throttled_first, throttled_next, clean = asyncio.run(write_then_check())
    assert (blocked.status, blocked.result, blocked.headers["X-Ratehound-Scope"]) == (429, "block", "account")
    assert throttled_first.status == 200 and throttled_next.result == "throttle"  # one token, then refused
    assert (clean.status, clean.result) == (200, "allow")  # read, not degraded: MGET was allowed
    assert _acl_log(admin) == []

    gw = _client(acl_redis, "ratehound-gateway")
    assert gw.xrange("rh:decisions:log", count=1)
    assert gw.mget(["rh:d:account:a1", "rh:heartbeat"])[0] is not None
    gw.close()


def test_card_decisions_are_written_by_the_detector_and_read_by_the_gateway(acl_redis, admin):
    # rh:d:payment:* is within both users' patterns: the detector writes and re-asserts it, the gateway reads it
    async def run() -> tuple[str, str]:
        sink = RedisDecisionSink(acl_redis.url_for("ratehound-detector"), prefix="rh")
        gw = Gateway(acl_redis.url_for("ratehound-gateway"), prefix="rh", timeout_s=1.0)
        try:
            assert await sink.write([_decision("payment", "pay_7f3a", "block")])
            assert await sink.reassert() == 1 and await sink.heartbeat("v1")
            card = await gw.check("acct_never_seen", "203.0.113.7", "64500", "pay_7f3a")
            assert await sink.write([_decision("payment", "pay_7f3a", "allow")])
            lifted = await gw.check("acct_never_seen", "203.0.113.7", "64500", "pay_7f3a")
            return card.headers.get("X-Ratehound-Scope", ""), lifted.result
        finally:
            await sink.close()
            await gw.close()

    assert asyncio.run(run()) == ("payment", "allow")
    assert _acl_log(admin) == []

    admin.set("rh:d:payment:pay_7f3a", b'{"action": "block"}')
    gw = _client(acl_redis, "ratehound-gateway")
    _refused(lambda: gw.set("rh:d:payment:pay_7f3a", b'{"action": "allow"}'))
    _refused(lambda: gw.delete("rh:d:payment:pay_7f3a"))
    assert admin.get("rh:d:payment:pay_7f3a") == b'{"action": "block"}'
    gw.close()


def test_gateway_cannot_write(acl_redis, admin):
    admin.set("rh:d:account:a1", b'{"action": "block"}')
    sha = admin.script_load("return redis.call('DEL', KEYS[1])")
    gw = _client(acl_redis, "ratehound-gateway")
    for call in [
        lambda: gw.set("rh:d:account:a1", b'{"action": "allow"}'),
        lambda: gw.delete("rh:d:account:a1"),
        lambda: gw.set("rh:heartbeat", "x"),
        lambda: gw.xadd("rh:decisions:log", {"d": "x"}),
        lambda: gw.publish("rh:decisions", "x"),
        lambda: gw.evalsha(sha, 1, "rh:d:account:a1"),
        lambda: gw.get("other:key"),
        lambda: gw.flushall(),
        lambda: gw.config_get("*"),
        lambda: gw.keys("*"),
    ]:
        _refused(call)
    assert admin.get("rh:d:account:a1") == b'{"action": "block"}'
    gw.close()


def test_wrong_password_and_anonymous_clients_are_refused(acl_redis, admin):
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(acl_redis.url_for("ratehound-detector", "not-the-password")).ping()
    with pytest.raises(AuthenticationError):
        redis.Redis.from_url(f"redis://{LOOPBACK}:{acl_redis.port}/0").ping()
    with pytest.raises(AuthenticationError):  # the default user is off, whatever password is offered
        redis.Redis.from_url(f"redis://:whatever@{LOOPBACK}:{acl_redis.port}/0").ping()


def _tls_files(d: Path) -> Path:
    """A throwaway CA, a server certificate for localhost and a client certificate, all signed by it."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ratehound-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, cn in (("server", "localhost"), ("client", "ratehound-detector")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "san.cnf", "-out", f"{name}.pem")
    return d


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
def test_sink_and_gateway_over_mutual_tls(tmp_path):
    """rediss:// URLs with ssl_ca_certs (and a client certificate) are all the worker and the gateway need."""
    tls = _tls_files(tmp_path)
    try:
        server = AclRedis(_filled_acl(tmp_path), tls=tls, startup_timeout=10).start()
    except RedisStartError as exc:
        if "tls" in str(exc).lower():
            pytest.skip(f"this redis-server has no TLS: {exc}")
        raise

    async def run() -> tuple[bool, str]:
        sink = RedisDecisionSink(server.url_for("ratehound-detector"), prefix="rh")
        gw = Gateway(server.url_for("ratehound-gateway"), prefix="rh", timeout_s=1.0)
        try:
            wrote = await sink.write([_decision("account", "a1", "block")]) and await sink.heartbeat("v1")
            return wrote, (await gw.check("a1", "", "")).result
        finally:
            await sink.close()
            await gw.close()

    try:
        assert asyncio.run(run()) == (True, "block")
        no_client_cert = server.url_for("ratehound-gateway").split("&ssl_certfile")[0]
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(no_client_cert, socket_timeout=2).ping()
        with pytest.raises(redis.ConnectionError):  # plaintext to the TLS port
            redis.Redis.from_url(f"redis://{LOOPBACK}:{server.port}/0", socket_timeout=2).ping()
    finally:
        server.stop()
