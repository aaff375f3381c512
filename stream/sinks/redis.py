"""Decisions into Redis, in the layout gateways read (see README, "Redis layout").

- ``{prefix}:d:{scope}:{key}``: the decision in force on that key (JSON), expiring
  at its absolute expiry (``PXAT``), so a replayed event never extends a block.
  The key is the scope followed by the whole id, so no id can reach another
  scope's key or another id's key. A weaker decision never overwrites a stronger
  one still in force (a Lua check), whichever worker writes first.
- ``{prefix}:decisions`` (pub/sub) and ``{prefix}:decisions:log`` (a capped stream):
  every decision, for gateways that cache locally and for people.
- ``{prefix}:heartbeat``: the writer's wall time and config version, expiring in
  30 s: a gateway that finds it missing knows the decisions are stale.

Writes are pipelined. When Redis is down the decisions wait in a bounded queue
and are retried; decisions in force are re-asserted periodically, so a Redis
restarted empty is repopulated within one period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from detectors.policy import Decision, encode_decision
from stream import metrics

log = logging.getLogger(__name__)

_STRENGTH = {"review": 1, "throttle": 2, "block": 3}
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

    >>> decision_key("rh", "network", "203.0.113.0/24")
    'rh:d:network:203.0.113.0/24'
    """
    return f"{prefix}:d:{scope}:{key}"


def gateway_value(d: Decision) -> bytes:
    """What a gateway reads: the action, its limit, why, and until when."""
    doc = {"action": d.action, "reason": d.reason, "expires_at": d.expires_at, "id": d.id,
           "strength": _STRENGTH.get(d.action, 0), "ts": d.ts, "config_version": d.config_version}
    if d.limit_rps is not None:
        doc["limit_rps"] = d.limit_rps
    return orjson.dumps(doc)


class RedisDecisionSink:
    """Pipelined, retried decision writes with a heartbeat and periodic re-assertion."""

    def __init__(self, url: str, prefix: str = "rh", clock: Callable[[], float] = time.time,
                 max_pending: int = 200_000, socket_timeout: float = 2.0, stream_maxlen: int = 100_000):
        self.url = url
        self.prefix = prefix
        self.clock = clock
        self.max_pending = max_pending
        self.stream_maxlen = stream_maxlen
        self.client = aioredis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._set_script = self.client.register_script(_SET_UNLESS_STRONGER)
        self.pending: list[Decision] = []
        self.active: dict[tuple[str, str], Decision] = {}
        self.dropped = 0
        self.healthy = True
        self.last_error = ""  # what the last failed write said, for a command's one line

    async def write(self, decisions: Iterable[Decision]) -> bool:
        """Queue decisions and try to write everything queued; False if Redis did not take them."""
        for d in decisions:
            if d.action in ("throttle", "block"):
                cur = self.active.get((d.scope, d.key))
                if cur is None or _STRENGTH[d.action] >= _STRENGTH.get(cur.action, 0) or cur.expires_at <= d.ts:
                    self.active[(d.scope, d.key)] = d
            elif d.action == "allow":
                self.active.pop((d.scope, d.key), None)
            self.pending.append(d)
        if len(self.pending) > self.max_pending:
            # Oldest first out: the decisions in force are still re-asserted from self.active.
            over = len(self.pending) - self.max_pending
            del self.pending[:over]
            self.dropped += over
        return await self.flush()

    async def flush(self) -> bool:
        if not self.pending:
            return True
        batch, self.pending = self.pending, []
        now_ms = int(self.clock() * 1000)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for d in batch:
                    await self._queue(pipe, d, now_ms)
                await pipe.execute()
        except (TimeoutError, RedisError, OSError) as exc:
            self.last_error = str(exc) or repr(exc)
            self.pending = batch + self.pending
            metrics.SINK_WRITES.labels("redis", "error").inc(len(batch))
            metrics.SINK_PENDING.labels("redis").set(len(self.pending))
            if self.healthy:
                log.warning("redis write failed, %d decisions queued for retry: %r", len(self.pending), exc)
            self._set_health(False)
            return False
        if not self.healthy:
            log.info("redis is back; wrote %d queued decisions", len(batch))
        self._set_health(True)
        metrics.SINK_WRITES.labels("redis", "ok").inc(len(batch))
        metrics.SINK_PENDING.labels("redis").set(len(self.pending))
        now = self.clock()
        for d in batch:  # from the triggering event's gateway time to readable in Redis
            metrics.LATENCY.observe(max(0.0, now - d.ts))
        return True

    def _set_health(self, up: bool) -> None:
        self.healthy = up
        metrics.SINK_UP.labels("redis").set(1 if up else 0)

    async def _queue(self, pipe, d: Decision, now_ms: int) -> None:
        body = encode_decision(d)
        pipe.publish(f"{self.prefix}:decisions", body)
        pipe.xadd(f"{self.prefix}:decisions:log", {"d": body}, maxlen=self.stream_maxlen, approximate=True)
        key = decision_key(self.prefix, d.scope, d.key)
        if d.action == "allow":
            pipe.delete(key)
        elif d.action in ("throttle", "block"):
            expires_ms = int(d.expires_at * 1000)
            if expires_ms > now_ms:
                await self._set_script(keys=[key], args=[gateway_value(d), _STRENGTH[d.action], expires_ms],
                                       client=pipe)

    async def reassert(self) -> int:
        """Rewrite every decision still in force (repopulates a Redis that restarted empty)."""
        now = self.clock()
        self.active = {k: d for k, d in self.active.items() if d.expires_at > now}
        metrics.ACTIVE.labels("account").set(sum(1 for k in self.active if k[0] == "account"))
        metrics.ACTIVE.labels("network").set(sum(1 for k in self.active if k[0] == "network"))
        metrics.ACTIVE.labels("asn").set(sum(1 for k in self.active if k[0] == "asn"))
        if not self.active:
            return 0
        items = list(self.active.items())
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for _, d in items:
                    await self._set_script(keys=[decision_key(self.prefix, d.scope, d.key)],
                                           args=[gateway_value(d), _STRENGTH[d.action], int(d.expires_at * 1000)],
                                           client=pipe)
                results = await pipe.execute()
        except (TimeoutError, RedisError, OSError):
            metrics.SINK_WRITES.labels("redis", "error").inc()
            self._set_health(False)
            return 0
        self._set_health(True)
        for (k, _), r in zip(items, results, strict=True):
            if r == 2:  # a person's decision holds the key: ours must not come back when it expires
                self.active.pop(k, None)
        return len(self.active)

    async def heartbeat(self, version: str, ttl_s: int = 30) -> bool:
        try:
            await self.client.set(f"{self.prefix}:heartbeat",
                                  orjson.dumps({"ts": self.clock(), "config_version": version}), ex=ttl_s)
        except (TimeoutError, RedisError, OSError):
            metrics.SINK_WRITES.labels("redis", "error").inc()
            self._set_health(False)
            return False
        self._set_health(True)
        return True

    async def close(self) -> None:
        await self.client.aclose()

