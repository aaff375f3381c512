"""Request events of the contract: decoding, validation and rejection reasons.

A message from the gateway is one JSON object or a JSON array of up to 1,000 of
them. Decoding is typed (msgspec), so a valid event costs one C-level pass; an
invalid one is re-examined alone, so one bad event never takes its neighbours
down with it. Every rejection carries a machine-readable reason.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated

import msgspec

MAX_ARRAY = 1000
MAX_MESSAGE_BYTES = 1_048_576

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Short = Annotated[str, msgspec.Meta(max_length=128)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Fingerprint = Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{16}$")]


class Event(msgspec.Struct, frozen=False, gc=False):
    """One request event as the gateway sent it (contract field names)."""

    event_id: Id
    ts: float
    account_id: Id
    ip: Annotated[str, msgspec.Meta(min_length=2, max_length=64)]
    asn: NonNegInt | None = None
    org_id: Short | None = None
    api_key_id: Short | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    endpoint: Short | None = None
    model: Short | None = None
    input_tokens: NonNegInt | None = None
    output_tokens: NonNegInt | None = None
    status: int | None = None
    account_created_ts: float | None = None
    prompt_fp: Fingerprint | None = None
    payment_fp: Short | None = None


class Reject(msgspec.Struct, gc=False):
    """Why one message (or one element of an array message) was not processed."""

    reason: str
    detail: str
    raw: bytes


# Reasons are a closed set: they become metric label values and DLQ fields.
REASONS = (
    "too_large",
    "not_json",
    "not_object",
    "array_too_long",
    "schema",
    "bad_ip",
    "bad_ts",
    "future_ts",
    "late",
    "processing_error",
)

_decode_one = msgspec.json.Decoder(Event).decode
_decode_many = msgspec.json.Decoder(list[Event]).decode
_decode_raw_list = msgspec.json.Decoder(list[msgspec.Raw]).decode


class EventDecoder:
    """Turns gateway messages into valid events and rejections.

    ``max_future_s`` bounds how far ahead of the reference clock an event may
    claim to be: an attacker-set timestamp cannot drag detector time forward.
    The reference clock is passed in (``now``), never read here.

    >>> d = EventDecoder()
    >>> ok, bad = d.decode(b'{"event_id":"e1","ts":100.0,"account_id":"a","ip":"10.0.0.1"}', now=100.0)
    >>> [e.account_id for e in ok], bad
    (['a'], [])
    >>> ok, bad = d.decode(b'[{"event_id":"e2","ts":1e12,"account_id":"a","ip":"10.0.0.1"}, 7]', now=100.0)
    >>> ok, [r.reason for r in bad]
    ([], ['not_object', 'future_ts'])
    """

    def __init__(self, max_future_s: float = 300.0, ip_cache_size: int = 200_000):
        self.max_future_s = max_future_s
        self._ip_ok: dict[str, bool] = {}
        self._ip_cache_size = ip_cache_size

    def decode(self, payload: bytes, now: float) -> tuple[list[Event], list[Reject]]:
        """Decode one message; ``now`` is the reference time for the future-skew check."""
        if len(payload) > MAX_MESSAGE_BYTES:
            return [], [Reject("too_large", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}", payload[:4096])]
        head = payload.lstrip()[:1]
        try:
            if head == b"[":
                events = _decode_many(payload)
                if len(events) > MAX_ARRAY:
                    return [], [Reject("array_too_long", f"{len(events)} events > {MAX_ARRAY}", payload[:4096])]
            else:
                events = [_decode_one(payload)]
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return self._decode_slowly(payload, now)
        return self._check(events, now)

    def decode_lines(self, array: bytes, now: float) -> tuple[list[Event], list[Reject]]:
        """Decode a JSON array built from file lines: no length cap, one typed pass when all are valid."""
        try:
            return self._check(_decode_many(array), now)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return self._decode_slowly(array, now, max_len=None)

    def _decode_slowly(self, payload: bytes, now: float, max_len: int | None = MAX_ARRAY,
                       ) -> tuple[list[Event], list[Reject]]:
        """Element by element, so that one bad event rejects only itself."""
        try:
            doc = _decode_raw_list(payload) if payload.lstrip()[:1] == b"[" else [msgspec.Raw(payload)]
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            return [], [Reject("not_json", _short(exc), payload[:4096])]
        if max_len is not None and len(doc) > max_len:
            return [], [Reject("array_too_long", f"{len(doc)} events > {MAX_ARRAY}", payload[:4096])]
        events: list[Event] = []
        rejects: list[Reject] = []
        for raw in doc:
            item = bytes(raw)
            try:
                events.append(_decode_one(item))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
                rejects.append(Reject(_classify(item, exc), _short(exc), item[:4096]))
        ok, more = self._check(events, now)
        return ok, rejects + more

    def _check(self, events: list[Event], now: float) -> tuple[list[Event], list[Reject]]:
        """Semantic checks msgspec cannot express: finite times, real addresses."""
        ok: list[Event] = []
        rejects: list[Reject] = []
        horizon = now + self.max_future_s
        for ev in events:
            ts = ev.ts
            if not math.isfinite(ts) or ts <= 0:
                rejects.append(Reject("bad_ts", f"ts={ts!r}", encode_event(ev)))
            elif ts > horizon:
                rejects.append(Reject("future_ts", f"ts={ts} is {ts - now:.0f}s ahead", encode_event(ev)))
            elif not self._valid_ip(ev.ip):
                rejects.append(Reject("bad_ip", f"ip={ev.ip[:64]!r}", encode_event(ev)))
            else:
                c = ev.account_created_ts
                if c is not None and not math.isfinite(c):
                    ev.account_created_ts = None
                ok.append(ev)
        return ok, rejects

    def _valid_ip(self, ip: str) -> bool:
        known = self._ip_ok.get(ip)
        if known is not None:
            return known
        try:
            ipaddress.ip_address(ip)
            valid = True
        except ValueError:
            valid = False
        if len(self._ip_ok) >= self._ip_cache_size:
            self._ip_ok.clear()
        self._ip_ok[ip] = valid
        return valid


def _classify(item: bytes, exc: BaseException) -> str:
    if "`$.ts`" in str(exc):
        return "bad_ts"
    if isinstance(exc, msgspec.ValidationError):
        return "schema" if item.lstrip()[:1] == b"{" else "not_object"
    return "not_json"


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


def encode_event(ev: Event) -> bytes:
    """The event as contract JSON (None fields omitted)."""
    return msgspec.json.encode({k: v for k, v in msgspec.structs.asdict(ev).items() if v is not None})
