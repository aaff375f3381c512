"""The gateway companion: answers an nginx ``auth_request`` (or any HTTP caller) from the decisions in Redis.

``GET /check`` with the account in ``X-Account-Id`` (or ``?account=``), the client
address in ``X-Real-IP`` (or ``?ip=``), optionally the ASN in ``X-Asn`` (or
``?asn=``) and the account's payment instrument in ``X-Payment-Fp`` (or
``?payment=``, the ``payment_fp`` of the request events). One ``MGET`` reads the
account's, the network's, the ASN's and the instrument's decision and
``rh:heartbeat``: a block on the card stops every account billed to it, also one
the detector never saw. The answer is 200 to let the request through, or 429 with
``Retry-After`` and ``X-Ratehound-{Reason,Action,Scope}`` for a block, or for a
throttle whose local token bucket is empty. A caller that can only act on
401/403 (nginx's ``auth_request``) asks for that status with the request header
``X-Ratehound-Deny-Status: 403``; the answer then also carries
``X-Ratehound-Status: 429``.

It fails open: when Redis refuses, does not answer within the timeout (20 ms),
or the workers' heartbeat is missing, the answer is 200 with
``X-Ratehound-Degraded: redis-down|redis-slow|stale``, counted on ``/metrics``.
The detector is a second line of defence, never the reason an API is down.

What to answer, given what Redis returned, is the pure function :func:`verdict`;
the rest of the module is the aiohttp wiring around it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from detectors.network import NetworkKeys

log = logging.getLogger(__name__)

DEGRADED_REASONS = ("redis-down", "redis-slow", "stale")
RESULTS = ("allow", "throttle", "block", "degraded")
_DENY_STATUSES = {"401": 401, "403": 403, "429": 429}
_MAX_ID_LEN = 128  # the contract's bound on account_id and payment_fp: no decision can exist for a longer id


# --------------------------------------------------------------------------- the decision logic (pure)


class TokenBuckets:
    """Token buckets per (scope, key) for throttles, least recently used evicted past ``max_keys``.

    A bucket fills at the throttle's ``limit_rps`` and holds at most one second of
    it (at least one token), so a throttled key gets ``limit_rps`` on average and
    a burst of one second's worth. Time is an argument, as in the detectors.

    >>> b = TokenBuckets()
    >>> [b.take([("account", "a", 2.0)], now=0.0) for _ in range(3)]   # a burst of 2, then wait 0.5 s
    [0.0, 0.0, 0.5]
    >>> b.take([("account", "a", 2.0)], now=0.5)
    0.0
    """

    def __init__(self, max_keys: int = 100_000):
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # [tokens, last, rate]

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, scope: str, key: str, rate: float, now: float) -> list[float]:
        cap = max(1.0, rate)
        b = self._buckets.get((scope, key))
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            b = self._buckets[(scope, key)] = [cap, now, rate]
        else:
            self._buckets.move_to_end((scope, key))
            b[0] = min(cap, b[0] + max(0.0, now - b[1]) * rate)  # a new limit takes over at once
            b[1], b[2] = max(b[1], now), rate
        return b

    def take(self, limits: Sequence[tuple[str, str, float]], now: float) -> float:
        """Take one token from each (scope, key, rate) bucket; 0.0 if admitted, else seconds to wait.

        Either every bucket gives a token or none does, so a request refused by the
        network's bucket does not use up the account's.
        """
        buckets = [self._bucket(scope, key, rate, now) for scope, key, rate in limits]
        wait = max(((1.0 - b[0]) / b[2] for b in buckets if b[0] < 1.0), default=0.0)
        if wait > 0.0:
            return wait
        for b in buckets:
            b[0] -= 1.0
        return 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to answer: the result (a metric label), the HTTP status and the headers."""

    result: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def _header_safe(text: object, limit: int = 128) -> str:
    # The reason comes from Redis: keep it to printable ASCII so it can never break a header.
    return "".join(c for c in str(text)[:limit] if " " <= c <= "~")


def _deny(action: str, scope: str, reason: object, retry_s: float) -> Verdict:
    return Verdict(action, 429, {"Retry-After": _retry_after(retry_s), "X-Ratehound-Action": action,
                                 "X-Ratehound-Scope": scope, "X-Ratehound-Reason": _header_safe(reason)})


def degraded(reason: str) -> Verdict:
    """Fail open: let the request through and say why nothing was checked.

    >>> degraded("redis-slow").headers
    {'X-Ratehound-Degraded': 'redis-slow'}
    """
    return Verdict("degraded", 200, {"X-Ratehound-Degraded": reason})


ALLOW = Verdict("allow", 200)


def verdict(keys: Sequence[tuple[str, str]], values: Sequence[bytes | str | None], now: float,
            buckets: TokenBuckets) -> Verdict:
    """The answer for one request, given the ``MGET`` of its decision keys followed by the heartbeat.

    ``keys`` are the (scope, key) pairs looked up, ``values`` what Redis returned for
    them plus ``rh:heartbeat`` last. A block anywhere wins (its ``Retry-After``
    runs to the latest expiry); throttles take a token from a local bucket per
    (scope, key) and refuse only when it is empty (a throttle without
    ``limit_rps`` stops every request, as the contract says); review, allow,
    expired or unreadable values let the request through. No heartbeat means the
    decisions are stale: fail open.

    >>> hb = b'{"ts": 1.0}'
    >>> block = b'{"action": "block", "reason": "campaign", "expires_at": 130.5}'
    >>> v = verdict([("account", "a1")], [block, hb], now=100.0, buckets=TokenBuckets())
    >>> v.status, v.headers["Retry-After"], v.headers["X-Ratehound-Reason"]
    (429, '31', 'campaign')
    >>> verdict([("account", "a1")], [block, None], now=100.0, buckets=TokenBuckets()).headers
    {'X-Ratehound-Degraded': 'stale'}
    >>> verdict([("account", "a1")], [None, hb], now=100.0, buckets=TokenBuckets()).result
    'allow'
    """
    if not values or values[-1] is None:
        return degraded("stale")
    block: tuple[float, str, object] | None = None
    stop: tuple[float, str, object] | None = None  # a throttle that lets nothing through
    limits: list[tuple[str, str, float]] = []
    reasons: dict[tuple[str, str], object] = {}
    for (scope, key), raw in zip(keys, values, strict=False):
        if raw is None:
            continue
        try:
            doc = orjson.loads(raw)
            action = doc.get("action")
            expires_at = float(doc["expires_at"])
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            continue  # unreadable: nothing to enforce
        remaining = expires_at - now
        if remaining <= 0.0:
            continue
        if action == "block":
            if block is None or remaining > block[0]:
                block = (remaining, scope, doc.get("reason", ""))
        elif action == "throttle":
            rate = doc.get("limit_rps")
            if isinstance(rate, int | float) and rate > 0 and math.isfinite(rate):
                limits.append((scope, key, float(rate)))
                reasons[(scope, key)] = doc.get("reason", "")
            elif stop is None or remaining > stop[0]:
                stop = (remaining, scope, doc.get("reason", ""))
    if block is not None:
        return _deny("block", block[1], block[2], block[0])
    if stop is not None:
        return _deny("throttle", stop[1], stop[2], stop[0])
    if limits:
        wait = buckets.take(limits, now)
        if wait > 0.0:
            # name the tightest limit: the one the client has to slow down to
            scope, key, _ = min(limits, key=lambda lim: lim[2])
            return _deny("throttle", scope, reasons[(scope, key)], wait)
    return ALLOW


def lookup_keys(account: str, ip: str, asn: str, netkeys: NetworkKeys, payment: str = "") -> list[tuple[str, str]]:
    """The (scope, key) pairs to read for a request; what is missing or malformed is not looked up.

    The network is computed exactly as the detector does (:class:`NetworkKeys` with the
    config's prefixes), so the gateway reads the key the worker writes; the payment
    instrument is the ``payment_fp`` as the request events carry it.

    >>> lookup_keys("a1", "203.0.113.7", "64500", NetworkKeys())
    [('account', 'a1'), ('network', '203.0.113.0/24'), ('asn', '64500')]
    >>> lookup_keys("a1", "", "", NetworkKeys(), payment="pay_7f3a")
    [('account', 'a1'), ('payment', 'pay_7f3a')]
    >>> lookup_keys("", "2001:db8:42:1::9", "AS1", NetworkKeys())
    [('network', '2001:db8:42::/48')]
    >>> lookup_keys("a1", "not-an-ip", "", NetworkKeys())
    [('account', 'a1')]
    """
    keys: list[tuple[str, str]] = []
    if 0 < len(account) <= _MAX_ID_LEN:
        keys.append(("account", account))
    ip = ip.strip()
    if ip:
        try:
            addr = ipaddress.ip_address(ip)
            if addr.version == 6 and addr.ipv4_mapped is not None:
                ip = str(addr.ipv4_mapped)
            keys.append(("network", netkeys.network_of(ip)))
        except ValueError:
            pass  # not an address (or one with a zone): no network to look up
    asn = asn.strip()
    if asn.isascii() and asn.isdigit() and len(asn) <= 10 and int(asn) < 2**32:
        keys.append(("asn", str(int(asn))))
    if 0 < len(payment) <= _MAX_ID_LEN:
        keys.append(("payment", payment))
    return keys


# --------------------------------------------------------------------------- the service


class GatewayMetrics:
    """The gateway's own Prometheus registry: checks by result, degradations, Redis latency."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # as the worker's metrics: creation timestamps only double the series
        self.registry = CollectorRegistry(auto_describe=True)
        self.checks = Counter("ratehound_gateway_checks_total", "Checks answered, by result", ["result"],
                              registry=self.registry)
        self.degraded = Counter("ratehound_gateway_degraded_total",
                                "Checks answered without the decisions (failed open), by reason", ["reason"],
                                registry=self.registry)
        self.redis_seconds = Histogram(
            "ratehound_gateway_redis_seconds", "Latency of the decision lookup (one MGET), failures included",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1), registry=self.registry)
        for r in RESULTS:
            self.checks.labels(r)
        for r in DEGRADED_REASONS:
            self.degraded.labels(r)


class Gateway:
    """Looks decisions up in Redis with a deadline and turns them into verdicts.

    After a failure, Redis is left alone for ``backoff_s`` (answers fail open at
    once), so a hung Redis costs one request the timeout, not every request.
    """

    def __init__(self, redis_url: str, prefix: str = "rh", netkeys: NetworkKeys | None = None,
                 timeout_s: float = 0.02, backoff_s: float = 0.25, max_buckets: int = 100_000,
                 clock: Callable[[], float] = time.time):
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.prefix = prefix
        self.netkeys = netkeys or NetworkKeys(cache_size=100_000)
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.clock = clock
        self.buckets = TokenBuckets(max_buckets)
        self.metrics = GatewayMetrics()
        # No client-side retries: the deadline is ours, and a retry would only turn "down" into "slow".
        self.client = aioredis.Redis.from_url(redis_url, socket_timeout=max(1.0, timeout_s),
                                              socket_connect_timeout=max(1.0, timeout_s), retry=Retry(NoBackoff(), 0))
        self._heartbeat_key = f"{prefix}:heartbeat"
        self._down_until = 0.0
        self._down_reason = ""
        self.last_state = "unknown"

    async def check(self, account: str, ip: str, asn: str, payment: str = "") -> Verdict:
        from redis.exceptions import RedisError
        from redis.exceptions import TimeoutError as RedisTimeout

        keys = lookup_keys(account, ip, asn, self.netkeys, payment)
        if not keys:
            return self._count(ALLOW)
        if time.monotonic() < self._down_until:
            return self._count(degraded(self._down_reason))
        names = [f"{self.prefix}:d:{scope}:{key}" for scope, key in keys]
        names.append(self._heartbeat_key)
        t0 = time.perf_counter()
        failure = ""
        try:
            async with asyncio.timeout(self.timeout_s):
                values = await self.client.mget(names)
        except (TimeoutError, RedisTimeout):
            failure = "redis-slow"
        except (RedisError, OSError):
            failure = "redis-down"
        finally:
            self.metrics.redis_seconds.observe(time.perf_counter() - t0)
        if failure:
            if self.last_state != failure:
                log.warning("redis lookup failed (%s): failing open for %.2fs", failure, self.backoff_s)
            self.last_state = failure
            self._down_until, self._down_reason = time.monotonic() + self.backoff_s, failure
            return self._count(degraded(failure))
        v = verdict(keys, values, self.clock(), self.buckets)
        self.last_state = "stale" if v.result == "degraded" else "ok"
        return self._count(v)

    def _count(self, v: Verdict) -> Verdict:
        self.metrics.checks.labels(v.result).inc()
        if v.result == "degraded":
            self.metrics.degraded.labels(v.headers["X-Ratehound-Degraded"]).inc()
        return v

    async def close(self) -> None:
        await self.client.aclose()


def make_app(gw: Gateway, deny_status: int = 429):
    """The aiohttp application: ``/check``, ``/metrics``, ``/healthz``."""
    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def check(request: web.Request) -> web.Response:
        h, q = request.headers, request.query
        v = await gw.check(h.get("X-Account-Id") or q.get("account", ""), h.get("X-Real-IP") or q.get("ip", ""),
                           h.get("X-Asn") or q.get("asn", ""), h.get("X-Payment-Fp") or q.get("payment", ""))
        if v.status == 200:
            return web.Response(status=200, headers=v.headers)
        status = _DENY_STATUSES.get(h.get("X-Ratehound-Deny-Status", ""), deny_status)
        return web.Response(status=status, headers={**v.headers, "X-Ratehound-Status": str(v.status)},
                            content_type="application/json",
                            body=orjson.dumps({"error": "rate_limited", "action": v.headers["X-Ratehound-Action"],
                                               "scope": v.headers["X-Ratehound-Scope"],
                                               "retry_after": int(v.headers["Retry-After"])}))

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(gw.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        # Healthy while it answers: a Redis outage is a degraded (fail-open) state, not a reason to restart.
        return web.json_response({"status": "ok", "redis": gw.last_state})

    async def on_cleanup(app: web.Application) -> None:
        await gw.close()

    app = web.Application()
    app.router.add_get("/check", check)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.on_cleanup.append(on_cleanup)
    return app


def serve(redis_url: str, host: str = "127.0.0.1", port: int = 8081, prefix: str = "rh",
          ipv4_prefix: int = 24, ipv6_prefix: int = 48, timeout_s: float = 0.02, backoff_s: float = 0.25,
          deny_status: int = 429, max_buckets: int = 100_000) -> None:
    """Run the service until SIGINT/SIGTERM."""
    from aiohttp import web

    gw = Gateway(redis_url, prefix=prefix, netkeys=NetworkKeys(ipv4_prefix, ipv6_prefix, cache_size=100_000),
                 timeout_s=timeout_s, backoff_s=backoff_s, max_buckets=max_buckets)
    print(f"ratehound gateway on http://{host}:{port} (redis {redis_url.split('@')[-1]}, "
          f"timeout {timeout_s * 1000:.0f} ms)", file=sys.stderr, flush=True)
    web.run_app(make_app(gw, deny_status), host=host, port=port, access_log=None, print=None,
                handle_signals=True)
