"""Decisions into Redis, in the layout gateways read (see README, "Redis layout").

- ``{prefix}:d:{scope}:{key}``: the decision in force on that key (JSON), expiring
  at its absolute expiry (``PXAT``), so an event processed again never extends a block.
  The key is the scope followed by the whole id, so no id can reach another
  scope's key or another id's key. A weaker decision never overwrites a stronger
  one still in force (a Lua check), whichever worker writes first.
- ``{prefix}:decisions`` (pub/sub) and ``{prefix}:decisions:log`` (a capped stream):
  every decision, for gateways that cache locally and for people.
- ``{prefix}:heartbeat``: the writer's wall time and config version, expiring in
  30 s: a gateway that finds it missing knows the decisions are stale.

Writes are pipelined. When Redis is down the decisions wait in a bounded queue
and are retried; decisions in force are re-asserted periodically, so a Redis
restarted empty is repopulated within one period. That includes people's decisions
(``ratehound decision``, read back from the decisions topic): they are re-asserted as
the pins the command wrote (see :mod:`stream.overrides`), and while one holds a key the
detector's own decision on it is neither written nor counted as in force.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from detectors.policy import ENFORCING, STRENGTH, Decision, encode_decision
from stream import metrics
from stream.sinks.base import Sink

MANUAL_STRENGTH = 10  # a person's decision: above every detector strength (detectors.policy.STRENGTH)
# Set unless a stronger decision is still in force on the key; 2 when a person's manual decision holds it.
_SET_UNLESS_STRONGER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and doc['manual'] then return 2 end
  if ok and doc['strength'] and tonumber(doc['strength']) > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
"""
# A person's pin, re-asserted: unless a later person's decision holds the key now (a pin set by hand with
# redis-cli, without a time, counts as later: the runbooks' emergency pin).
_PIN_UNLESS_LATER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and doc['manual'] and (doc['ts'] == nil or tonumber(doc['ts']) > tonumber(ARGV[2])) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
"""


def redis_refusal(url: str, timeout_s: float = 2.0) -> str | None:
    """Why the Redis at ``url`` refuses us for good (a database it does not have, a wrong password, a user
    without the rights), or None: it answers, or it is only unreachable, which may pass (writes are retried).

    >>> redis_refusal("redis://127.0.0.1:1/0", timeout_s=0.2) is None  # nobody there: not a refusal
    True
    """
    import redis as sync_redis
    from redis.exceptions import AuthenticationError, ResponseError

    client = sync_redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
    except (AuthenticationError, ResponseError) as exc:
        return str(exc)
    except (TimeoutError, RedisError, OSError):
        return None
    finally:
        client.close()
    return None


def decision_key(prefix: str, scope: str, key: str) -> str:
    """The Redis key of the decision in force on (scope, key).

    >>> decision_key("rh", "network", "203.0.113.0/24"), decision_key("rh", "payment", "pay_7f3a")
    ('rh:d:network:203.0.113.0/24', 'rh:d:payment:pay_7f3a')
    """
    return f"{prefix}:d:{scope}:{key}"


def gateway_value(d: Decision) -> bytes:
    """What a gateway reads: the action, its limit, why, and until when."""
    doc = {"action": d.action, "reason": d.reason, "expires_at": d.expires_at, "id": d.id,
           "strength": STRENGTH[d.action], "ts": d.ts, "config_version": d.config_version}
    if d.limit_rps is not None:
        doc["limit_rps"] = d.limit_rps
    return orjson.dumps(doc)


def pinned_value(d: Decision) -> bytes:
    """The gateway value of a person's decision: ``manual``, who, and a strength no detector reaches.

    >>> d = Decision(ts=0.0, scope="account", key="a1", action="allow", ttl_s=60.0, reason="manual:fp", score=0.0,
    ...              evidence={"by": "ana"}, expires_at=60.0, config_version="manual")
    >>> doc = orjson.loads(pinned_value(d)); doc["action"], doc["strength"], doc["manual"], doc["by"]
    ('allow', 10, True, 'ana')
    """
    doc: dict[str, Any] = orjson.loads(gateway_value(d))
    doc.update(strength=MANUAL_STRENGTH, manual=True, by=d.evidence.get("by", ""))
    return orjson.dumps(doc)




class RedisDecisionSink(Sink[Decision]):
    """Pipelined, retried decision writes with a heartbeat and periodic re-assertion."""

    name = "redis"
    retry = "queued, written on the next write or flush; what is in force is re-asserted periodically"

    def __init__(self, url: str, prefix: str = "rh", clock: Callable[[], float] = time.time,
                 max_queued: int = 200_000, socket_timeout: float = 2.0, stream_maxlen: int = 100_000):
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.clock = clock
        self.max_queued = max_queued
        self.stream_maxlen = stream_maxlen
        self.client = aioredis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._set_script = self.client.register_script(_SET_UNLESS_STRONGER)
        self._pin_script = self.client.register_script(_PIN_UNLESS_LATER)
        self.queue: list[Decision] = []  # written to Redis not yet (it was down)
        self.active: dict[tuple[str, str], Decision] = {}  # the detector's throttles and blocks in force
        self.manual: dict[tuple[str, str], Decision] = {}  # people's decisions in force, re-asserted as pins
        self.dropped = 0

    async def write(self, items: Sequence[Decision]) -> bool:
        """Queue decisions and try to write everything queued; False if Redis did not take them."""
        for d in items:
            k = (d.scope, d.key)
            if d.action in ENFORCING and k not in self.manual:
                cur = self.active.get(k)
                if cur is None or STRENGTH[d.action] >= STRENGTH[cur.action] or cur.expires_at <= d.ts:
                    self.active[k] = d
            elif d.action == "allow":
                self.active.pop(k, None)
            self.queue.append(d)
        if len(self.queue) > self.max_queued:
            # Oldest first out: the decisions in force are still re-asserted from self.active.
            over = len(self.queue) - self.max_queued
            del self.queue[:over]
            self.dropped += over
        return await self.flush()

    async def flush(self) -> bool:
        if not self.queue:
            return True
        batch, self.queue = self.queue, []
        now_ms = int(self.clock() * 1000)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for d in batch:
                    await self._queue(pipe, d, now_ms)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            self.queue = batch + self.queue
            self.failed(len(batch), exc)
            self.queued(len(self.queue))
            return False
        self.delivered(len(batch))
        self.queued(len(self.queue))
        now = self.clock()
        for d in batch:  # from the triggering event's gateway time to readable in Redis
            metrics.LATENCY.observe(max(0.0, now - d.ts))
        return True

    async def _queue(self, pipe: Any, d: Decision, now_ms: int) -> None:
        body = encode_decision(d)
        pipe.publish(f"{self.prefix}:decisions", body)
        pipe.xadd(f"{self.prefix}:decisions:log", {"d": body}, maxlen=self.stream_maxlen, approximate=True)
        key = decision_key(self.prefix, d.scope, d.key)
        if d.action == "allow":
            pipe.delete(key)
        elif d.action in ENFORCING:
            expires_ms = int(d.expires_at * 1000)
            if expires_ms > now_ms:
                await self._set_script(keys=[key], args=[gateway_value(d), STRENGTH[d.action], expires_ms],
                                       client=pipe)

    def hold(self, d: Decision) -> None:
        """A person's decision, read back from the decisions topic: re-asserted as a pin until it expires
        (a later person's decision on the key replaces it), and the detector's on its key gives way."""
        k = (d.scope, d.key)
        cur = self.manual.get(k)
        if d.action not in ("allow", *ENFORCING) or d.expires_at <= self.clock() or (cur is not None and cur.ts > d.ts):
            return  # a review only flags; an expired or overtaken decision holds nothing
        self.manual[k] = d
        self.active.pop(k, None)
        self.count_active()

    def count_active(self) -> None:
        """``ratehound_active_enforcements``: the detector's throttles and blocks this worker has in force."""
        counts = dict.fromkeys(metrics.SCOPES, 0)
        for scope, _ in self.active:
            counts[scope] = counts.get(scope, 0) + 1
        for scope, n in counts.items():
            metrics.ACTIVE.labels(scope).set(n)

    async def reassert(self) -> int:
        """Rewrite every decision still in force, the detector's and people's (repopulates a Redis that
        restarted empty); returns how many of the detector's are in force."""
        now = self.clock()
        self.active = {k: d for k, d in self.active.items() if d.expires_at > now}
        self.manual = {k: d for k, d in self.manual.items() if d.expires_at > now}
        items = list(self.active.items())
        pins = list(self.manual.values())
        if items or pins:
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for _, d in items:
                        await self._set_script(keys=[decision_key(self.prefix, d.scope, d.key)],
                                               args=[gateway_value(d), STRENGTH[d.action], int(d.expires_at * 1000)],
                                               client=pipe)
                    for d in pins:
                        await self._pin_script(keys=[decision_key(self.prefix, d.scope, d.key)],
                                               args=[pinned_value(d), d.ts, int(d.expires_at * 1000)], client=pipe)
                    results = await pipe.execute()
            except (TimeoutError, RedisError, OSError) as exc:
                self.failed(1, exc)
                return len(self.active)
            self.up()
            for (k, _), r in zip(items, results, strict=False):
                if r == 2:  # a person's decision holds the key: ours must not come back when it expires
                    self.active.pop(k, None)
        self.count_active()
        return len(self.active)

    async def heartbeat(self, version: str, ttl_s: int = 30) -> bool:
        try:
            await self.client.set(f"{self.prefix}:heartbeat",
                                  orjson.dumps({"ts": self.clock(), "config_version": version}), ex=ttl_s)
        except (TimeoutError, RedisError, OSError) as exc:
            self.failed(1, exc)
            return False
        self.up()
        return True

    async def close(self) -> None:
        await self.client.aclose()
