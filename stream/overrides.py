"""Manual decisions: an operator lifts or imposes a decision that takes effect at once.

``ratehound decision allow|block|throttle|review SCOPE KEY --ttl 1h --reason CODE``
builds a :class:`Decision` (reason ``manual:CODE``, evidence ``{"by", "note"}``),
writes it to Redis through :class:`RedisDecisionSink` (so gateways see it at once
and it reaches ``rh:decisions`` and ``rh:decisions:log``), then publishes it on
the ``decisions`` topic for the audit trail.

A manual decision must beat the detector's, both ways: a manual block must not be
shortened or replaced by a later detector decision, and a manual allow must not
be undone by the worker, which re-asserts every decision it has in force every
15 s. Deleting the key is not enough for either, so a manual allow, throttle or
block *pins* the key: after the sink's ordinary write, the key is set
unconditionally to the gateway value with ``"manual": true`` and strength
:data:`~stream.sinks.redis.MANUAL_STRENGTH`, above every detector strength, expiring at the
manual decision's own expiry. The sink's set-unless-stronger script then refuses every
detector write to that key until the pin expires; a later manual decision
replaces it (the last operator wins). A pinned ``allow`` reads as
``{"action": "allow", ...}``, which gateways pass like a missing key. ``review``
only flags for a person: it is published, and the key is left as it is.

Workers read manual decisions back from the decisions topic (:mod:`stream.manual`) and
re-assert their pins with the detector's decisions, so a Redis that restarts empty gets
them back within a re-assertion period, as long as they have not expired.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
import time
from typing import TYPE_CHECKING

from detectors.policy import Decision, decision_id, encode_decision
from stream.metrics import SCOPES
from stream.sinks.redis import RedisDecisionSink, decision_key, pinned_value

if TYPE_CHECKING:
    from stream.settings import Settings

ACTIONS = ("allow", "block", "throttle", "review")
_TTL_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_TTL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
MAX_TTL_S = 365 * 86400.0
_REASON_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class OverrideError(ValueError):
    """An override that cannot be made as asked; the message says which argument and why."""


class ApplyError(RuntimeError):
    """Redis or Kafka did not take the override; the message says which and what took effect."""


def parse_ttl(text: str) -> float:
    """Seconds in a TTL written as ``30s``, ``15m``, ``1h``, ``2d``, ``1w`` or plain seconds.

    >>> parse_ttl("30s"), parse_ttl("15m"), parse_ttl("1h"), parse_ttl("2d"), parse_ttl("90"), parse_ttl("1.5h")
    (30.0, 900.0, 3600.0, 172800.0, 90.0, 5400.0)
    >>> parse_ttl("0s")
    Traceback (most recent call last):
    ...
    stream.overrides.OverrideError: --ttl: must be more than 0 seconds, got '0s'
    >>> parse_ttl("1y")
    Traceback (most recent call last):
    ...
    stream.overrides.OverrideError: --ttl: expected a number with s, m, h, d or w (e.g. 30s, 15m, 1h, 2d), got '1y'
    """
    m = _TTL_RE.match(text or "")
    if m is None:
        raise OverrideError(f"--ttl: expected a number with s, m, h, d or w (e.g. 30s, 15m, 1h, 2d), got {text!r}")
    seconds = float(m.group(1)) * _TTL_UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise OverrideError(f"--ttl: must be more than 0 seconds, got {text!r}")
    if seconds > MAX_TTL_S:
        raise OverrideError(f"--ttl: at most 365d (use the config's allowlists for good), got {text!r}")
    return seconds


def validate_key(scope: str, key: str, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> str:
    """The key as the detector and the gateway spell it, or an error saying what is wrong.

    A network must be canonical CIDR with the prefix the gateway looks up (the
    config's ``network.ipv4_prefix``/``ipv6_prefix``): any other network would be
    written and never read. An account or a payment instrument (``payment_fp``) is
    the opaque id as the request events carry it.

    >>> validate_key("network", "203.0.113.0/24"), validate_key("asn", "64500"), validate_key("payment", "pay_7f3a")
    ('203.0.113.0/24', '64500', 'pay_7f3a')
    >>> validate_key("network", "203.0.113.7/24")
    Traceback (most recent call last):
    ...
    stream.overrides.OverrideError: network '203.0.113.7/24': not canonical CIDR (host bits set); did you mean 203.0.113.0/24?
    >>> validate_key("network", "203.0.0.0/16")
    Traceback (most recent call last):
    ...
    stream.overrides.OverrideError: network '203.0.0.0/16': gateways look up /24 networks for IPv4 (network.ipv4_prefix), not /16
    >>> validate_key("asn", "AS64500")
    Traceback (most recent call last):
    ...
    stream.overrides.OverrideError: asn 'AS64500': expected a decimal number without leading zeros, e.g. 64500
    """
    if scope not in SCOPES:
        raise OverrideError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
    if scope in ("account", "payment"):  # the contract's bound: no decision can exist for a longer id
        if not 1 <= len(key) <= 128 or not key.isprintable():
            raise OverrideError(f"{scope} {key!r}: expected 1 to 128 printable characters")
        return key
    if scope == "asn":
        if not key.isdecimal() or not key.isascii() or (len(key) > 1 and key[0] == "0") or int(key) >= 2**32:
            raise OverrideError(f"asn {key!r}: expected a decimal number without leading zeros, e.g. 64500")
        return key
    try:
        net = ipaddress.ip_network(key, strict=False)
    except ValueError as exc:
        raise OverrideError(f"network {key!r}: not a network in CIDR form ({exc})") from None
    want = ipv4_prefix if net.version == 4 else ipv6_prefix
    if "/" not in key:
        example = ipaddress.ip_network(f"{key}/{want}", strict=False)
        raise OverrideError(f"network {key!r}: give the network with its prefix length, e.g. {example}")
    if str(net) != key:
        hint = "host bits set" if net.network_address != ipaddress.ip_interface(key).ip else "not in canonical form"
        raise OverrideError(f"network {key!r}: not canonical CIDR ({hint}); did you mean {net}?")
    if net.prefixlen != want:
        field = "network.ipv4_prefix" if net.version == 4 else "network.ipv6_prefix"
        raise OverrideError(f"network {key!r}: gateways look up /{want} networks for IPv{net.version} ({field}), "
                            f"not /{net.prefixlen}")
    return key


def build_override(action: str, scope: str, key: str, ttl: str, reason: str, limit_rps: float | None = None,
                   by: str | None = None, note: str | None = None, now: float | None = None,
                   ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> Decision:
    """The manual decision, validated: reason ``manual:...``, evidence ``{"by", "note"}``.

    >>> d = build_override("block", "account", "a1", "1h", "stolen_key", by="ana", now=1000.0)
    >>> d.action, d.reason, d.ttl_s, d.expires_at, d.evidence
    ('block', 'manual:stolen_key', 3600.0, 4600.0, {'by': 'ana', 'note': 'stolen_key'})
    >>> build_override("throttle", "account", "a1", "1h", "x", by="ana").limit_rps
    Traceback (most recent call last):
    ...
    stream.overrides.OverrideError: --limit-rps: a throttle needs a rate above 0 (requests per second)
    """
    if action not in ACTIONS:
        raise OverrideError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
    key = validate_key(scope, key, ipv4_prefix, ipv6_prefix)
    ttl_s = parse_ttl(ttl)
    code = reason[len("manual:"):] if reason.startswith("manual:") else reason
    if not _REASON_RE.match(code):
        raise OverrideError(f"--reason {reason!r}: a short code of letters, digits and _.- (at most 64), "
                            f"e.g. false_positive; put free text in --note")
    if action == "throttle":
        if limit_rps is None or not limit_rps > 0 or limit_rps == float("inf"):
            raise OverrideError("--limit-rps: a throttle needs a rate above 0 (requests per second)")
    elif limit_rps is not None:
        raise OverrideError(f"--limit-rps: only a throttle has a rate, not {action}")
    if note is not None and len(note) > 512:
        raise OverrideError("--note: at most 512 characters")
    by = by or os.environ.get("USER") or _login()
    ts = time.time() if now is None else now
    return Decision(ts=ts, scope=scope, key=key, action=action, ttl_s=ttl_s, reason=f"manual:{code}", score=0.0,
                    evidence={"by": by, "note": note if note is not None else code},
                    limit_rps=float(limit_rps) if action == "throttle" and limit_rps is not None else None,
                    id=decision_id(scope, key, f"manual:{action}", int(ts * 1000)), expires_at=ts + ttl_s,
                    config_version="manual")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def apply_to_redis(d: Decision, url: str, prefix: str = "rh", timeout_s: float = 5.0) -> None:
    """Write the decision through the sink (pub/sub, log, key), then pin the key (see the module doc)."""
    from redis.exceptions import RedisError

    from stream.settings import redact

    sink = RedisDecisionSink(url, prefix=prefix, socket_timeout=timeout_s)
    try:
        if not await sink.write([d]):
            raise ApplyError(f"redis at {redact(url)} did not take the decision: {sink.last_error}")
        if d.action in ("allow", "throttle", "block"):
            try:
                await sink.client.set(decision_key(prefix, d.scope, d.key), pinned_value(d),
                                      pxat=int(d.expires_at * 1000))
            except (TimeoutError, RedisError, OSError) as exc:
                raise ApplyError(f"redis at {redact(url)}: {exc}") from None
    finally:
        await sink.close()


def publish_to_kafka(d: Decision, settings: Settings) -> None:
    """Send the decision to the decisions topic, keyed ``scope:key`` as the worker does, and wait for the ack;
    a broker that does not answer within ``RATEHOUND_CONNECT_TIMEOUT_S`` is an :class:`ApplyError`."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from stream.topics import BrokerUnreachable, quiet_kafka_python, wait_for_broker

    topic, timeout_s = settings.topics.decisions, settings.connect_timeout_s
    producer = None
    with quiet_kafka_python():
        try:
            wait_for_broker(settings)
            producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0,
                                     max_block_ms=int(timeout_s * 1000), request_timeout_ms=int(timeout_s * 1000),
                                     client_id="ratehound-decision", **settings.kafka_client_config)
            producer.send(topic, key=f"{d.scope}:{d.key}".encode(), value=encode_decision(d)).get(timeout=timeout_s)
        except BrokerUnreachable as exc:
            raise ApplyError(str(exc)) from None
        except (KafkaError, OSError) as exc:
            raise ApplyError(f"kafka at {settings.bootstrap}, topic {topic!r}: {exc!r}") from None
        finally:
            if producer is not None:
                producer.close(timeout=2)


def apply(d: Decision, settings: Settings) -> None:
    """Redis first (the decision takes effect at once), then the topic (the audit trail, and what workers
    re-assert it from if Redis restarts empty).

    An incident should not wait for Kafka: if only the topic fails, the decision is
    in force and the error says what it lacks.
    """
    import asyncio

    asyncio.run(apply_to_redis(d, settings.redis_url, settings.redis_prefix))
    try:
        publish_to_kafka(d, settings)
    except ApplyError as exc:
        raise ApplyError(f"in force in Redis, but NOT on the decisions topic (no audit record, and not re-asserted "
                         f"if Redis restarts empty): {exc}") from None
