"""Tests for detectors/events.py: decoding, validation and rejection reasons of gateway messages."""

from __future__ import annotations

import ipaddress
import json
import math
import random
import re

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.events import MAX_ARRAY, MAX_MESSAGE_BYTES, REASONS, Event, EventDecoder, Reject, encode_event

NOW = 1_790_000_000.0
FULL = {
    "event_id": "e-1",
    "ts": NOW - 5.0,
    "account_id": "acct_1",
    "ip": "203.0.113.7",
    "asn": 64500,
    "org_id": "org_1",
    "api_key_id": "key_1",
    "user_agent": "sdk/1.2",
    "endpoint": "/v1/chat",
    "model": "m-large",
    "input_tokens": 120,
    "output_tokens": 900,
    "status": 200,
    "account_created_ts": NOW - 86400.0,
    "prompt_fp": "0123456789abcdef",
    "payment_fp": "pay_1",
}
MINIMAL = {k: FULL[k] for k in ("event_id", "ts", "account_id", "ip")}
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")


def enc(obj) -> bytes:
    return json.dumps(obj).encode()


def with_(**changes) -> dict:
    ev = dict(FULL)
    for k, v in changes.items():
        if v is _DROP:
            ev.pop(k, None)
        else:
            ev[k] = v
    return ev


_DROP = object()


def decode(payload: bytes, now: float = NOW) -> tuple[list[Event], list[Reject]]:
    return EventDecoder().decode(payload, now=now)


def reasons(payload: bytes, now: float = NOW) -> list[str]:
    ok, bad = decode(payload, now)
    assert not ok
    return [r.reason for r in bad]


def assert_valid_event(ev: Event, now: float, max_future_s: float = 300.0) -> None:
    """Everything the contract promises about an accepted event."""
    assert isinstance(ev, Event)
    assert isinstance(ev.ts, float) and math.isfinite(ev.ts) and 0 < ev.ts <= now + max_future_s
    for name in ("event_id", "account_id"):
        v = getattr(ev, name)
        assert isinstance(v, str) and 1 <= len(v) <= 128
    ipaddress.ip_address(ev.ip)
    for name in ("org_id", "api_key_id", "endpoint", "model", "payment_fp"):
        v = getattr(ev, name)
        assert v is None or (isinstance(v, str) and len(v) <= 128)
    assert ev.user_agent is None or (isinstance(ev.user_agent, str) and len(ev.user_agent) <= 512)
    for name in ("asn", "input_tokens", "output_tokens"):
        v = getattr(ev, name)
        assert v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
    assert ev.status is None or (isinstance(ev.status, int) and not isinstance(ev.status, bool))
    assert ev.prompt_fp is None or _HEX16.match(ev.prompt_fp)
    assert ev.account_created_ts is None or math.isfinite(ev.account_created_ts)


def check_invariant(
    payload: bytes,
    now: float = NOW,
    decoder: EventDecoder | None = None,
) -> tuple[list[Event], list[Reject]]:
    """Decoding never raises; every element is a valid Event or a Reject with a known reason;
    for a parseable JSON array of at most MAX_ARRAY elements the counts add up to its length."""
    decoder = decoder or EventDecoder()
    ok, bad = decoder.decode(payload, now=now)
    for ev in ok:
        assert_valid_event(ev, now, decoder.max_future_s)
    for r in bad:
        assert isinstance(r, Reject)
        assert r.reason in REASONS
        assert isinstance(r.detail, str) and isinstance(r.raw, bytes)
    try:
        doc = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        doc = None
        # Not JSON as a whole: a rejection at least (an unknown field may hide bad bytes, so an
        # event can still be accepted).
        assert len(ok) + len(bad) >= 1
    if isinstance(doc, list):
        if len(doc) > MAX_ARRAY:
            assert ok == [] and [r.reason for r in bad] == ["array_too_long"]
        else:
            assert len(ok) + len(bad) == len(doc)
    elif doc is not None:
        assert len(ok) + len(bad) == 1
    elif not payload.strip():
        assert ok == [] and len(bad) == 1
    return ok, bad


# --- valid messages -----------------------------------------------------------------------------


def test_valid_object_with_every_field():
    ok, bad = decode(enc(FULL))
    assert bad == []
    assert len(ok) == 1
    ev = ok[0]
    assert msgspec.structs.asdict(ev) == FULL
    assert_valid_event(ev, NOW)


def test_valid_minimal_object_leaves_optional_fields_none():
    (ev,), bad = decode(enc(MINIMAL))
    assert bad == []
    assert ev.asn is None and ev.prompt_fp is None and ev.output_tokens is None


def test_integer_ts_is_accepted_as_float():
    (ev,), _ = decode(enc(with_(ts=int(NOW))))
    assert ev.ts == NOW and isinstance(ev.ts, float)


def test_valid_array_keeps_order():
    evs = [with_(event_id=f"e{i}", ts=NOW - i) for i in range(10)]
    ok, bad = decode(enc(evs))
    assert bad == []
    assert [e.event_id for e in ok] == [f"e{i}" for i in range(10)]


def test_leading_whitespace_before_array():
    ok, bad = decode(b"  \n\t" + enc([MINIMAL, MINIMAL]))
    assert len(ok) == 2 and bad == []


def test_empty_array_is_nothing():
    assert decode(b"[]") == ([], [])


def test_ipv6_and_ipv4_addresses_accepted():
    for ip in ("2001:db8:42:1::9", "::1", "198.51.100.255", "::ffff:192.0.2.1"):
        (ev,), bad = decode(enc(with_(ip=ip)))
        assert ev.ip == ip and bad == []


def test_unknown_fields_are_ignored():
    doc = with_(color="blue", nested={"a": [1, 2, {"b": None}]}, ts_extra=float("1e300"), status=503)
    (ev,), bad = decode(enc(doc))
    assert bad == []
    assert ev.status == 503
    assert not hasattr(ev, "color")


def test_unknown_field_with_invalid_utf8_does_not_reject_the_event():
    payload = enc(MINIMAL)[:-1] + b',"junk":"\xff\xfe"}'
    ok, bad = decode(payload)
    assert len(ok) + len(bad) == 1
    assert all(r.reason in REASONS for r in bad)


def test_encode_event_roundtrips_and_omits_none():
    (ev,), _ = decode(enc(MINIMAL))
    raw = encode_event(ev)
    assert json.loads(raw) == MINIMAL
    (again,), _ = decode(raw)
    assert again == ev


# --- arrays -----------------------------------------------------------------------------------


def test_array_of_max_length_is_accepted():
    evs = [with_(event_id=f"e{i}") for i in range(MAX_ARRAY)]
    ok, bad = decode(enc(evs))
    assert len(ok) == MAX_ARRAY and bad == []


@pytest.mark.parametrize("bad_element", [False, True])
def test_array_longer_than_max_is_rejected_whole(bad_element):
    evs: list = [MINIMAL] * (MAX_ARRAY + 1)
    if bad_element:
        evs = evs[:-1] + [7]
    ok, bad = decode(enc(evs))
    assert ok == []
    assert [r.reason for r in bad] == ["array_too_long"]
    assert len(bad[0].raw) <= 4096


def test_one_bad_element_rejects_only_itself():
    good = [with_(event_id=f"g{i}") for i in range(5)]
    doc = good[:2] + [with_(ip="not-an-ip")] + good[2:]
    ok, bad = decode(enc(doc))
    assert [e.event_id for e in ok] == ["g0", "g1", "g2", "g3", "g4"]
    assert [r.reason for r in bad] == ["bad_ip"]


def test_every_kind_of_bad_element_in_one_array():
    doc = [
        MINIMAL,
        7,
        "text",
        None,
        [],
        {"event_id": "x"},
        with_(ip="999.1.1.1"),
        with_(ts="yesterday"),
        with_(ts=NOW + 10_000),
        with_(ts=-5),
        with_(event_id="ok2"),
    ]
    ok, bad = decode(enc(doc))
    assert [e.event_id for e in ok] == ["e-1", "ok2"]
    got = sorted(r.reason for r in bad)
    assert got == sorted(["not_object"] * 4 + ["schema", "bad_ip", "bad_ts", "future_ts", "bad_ts"])
    assert len(ok) + len(bad) == len(doc)


def test_reject_raw_is_the_offending_element():
    bad_ev = with_(event_id="the-bad-one", asn=-1)
    ok, bad = decode(enc([MINIMAL, bad_ev]))
    assert len(ok) == 1
    assert json.loads(bad[0].raw)["event_id"] == "the-bad-one"


# --- every reason code path ---------------------------------------------------------------------


def test_too_large():
    payload = enc(with_(user_agent="x" * 500))
    payload = payload + b" " * (MAX_MESSAGE_BYTES + 1 - len(payload))
    ok, bad = decode(payload)
    assert ok == [] and [r.reason for r in bad] == ["too_large"]
    assert len(bad[0].raw) <= 4096


def test_exactly_max_message_bytes_is_not_too_large():
    payload = enc(MINIMAL)
    payload = payload + b" " * (MAX_MESSAGE_BYTES - len(payload))
    assert len(payload) == MAX_MESSAGE_BYTES
    ok, bad = decode(payload)
    assert len(ok) == 1 and bad == []


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"   ",
        b"{",
        b'{"event_id":',
        b"[1,2",
        b"nope",
        b"{'a': 1}",
        enc(MINIMAL) + b" x",
        enc(MINIMAL) + enc(MINIMAL),
        b"\x00\x01\x02",
        b"[" + enc(MINIMAL) + b",{]",
    ],
)
def test_not_json(payload):
    assert reasons(payload) == ["not_json"]


@pytest.mark.parametrize("payload", [b"7", b'"text"', b"null", b"true", b"1.5", b"-3"])
def test_not_object(payload):
    assert reasons(payload) == ["not_object"]


@pytest.mark.parametrize(
    "doc",
    [
        with_(event_id=_DROP),
        with_(account_id=_DROP),
        with_(ip=_DROP),
        with_(event_id=""),
        with_(event_id="x" * 129),
        with_(account_id=""),
        with_(account_id="a" * 129),
        with_(account_id=5),
        with_(event_id=None),
        with_(ip=None),
        with_(ip="1"),
        with_(ip="1" * 65),
        with_(user_agent="u" * 513),
        with_(org_id="o" * 129),
        with_(api_key_id="k" * 129),
        with_(endpoint="/" * 129),
        with_(model="m" * 129),
        with_(payment_fp="p" * 129),
        with_(prompt_fp="0123456789abcde"),
        with_(prompt_fp="0123456789abcdef0"),
        with_(prompt_fp="0123456789abcdeg"),
        with_(prompt_fp=1234567890123456),
        with_(asn=-1),
        with_(asn=1.5),
        with_(asn="64500"),
        with_(input_tokens=-1),
        with_(output_tokens=-1),
        with_(output_tokens=2.5),
        with_(status="200"),
        with_(account_created_ts="long ago"),
    ],
)
def test_schema(doc):
    assert reasons(enc(doc)) == ["schema"]


@pytest.mark.parametrize(
    "doc",
    [
        with_(event_id="x" * 128),
        with_(account_id="a"),
        with_(user_agent="u" * 512),
        with_(org_id="o" * 128),
        with_(prompt_fp="ABCDEF0123456789"),
        with_(asn=0),
        with_(input_tokens=0, output_tokens=0),
        with_(status=-1),
        with_(org_id=None, asn=None, prompt_fp=None),
        with_(account_created_ts=-1e9),
        with_(input_tokens=10**30),
    ],
)
def test_limits_inclusive(doc):
    ok, bad = decode(enc(doc))
    assert bad == [] and len(ok) == 1


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.999",
        "not-an-ip",
        "1.2.3",
        "::g",
        "10.0.0.1 ",
        " 10.0.0.1",
        "10.0.0.1/24",
        "01.2.3.4",
        "10.0.0.1\x00",
        "::1%%",
    ],
)
def test_bad_ip(ip):
    assert reasons(enc(with_(ip=ip))) == ["bad_ip"]


@pytest.mark.parametrize(
    "payload",
    [
        enc(with_(ts="yesterday")),
        enc(with_(ts=None)),
        enc(with_(ts=True)),
        enc(with_(ts=[NOW])),
        enc(with_(ts=0)),
        enc(with_(ts=-1.0)),
        enc(with_(ts=-0.0)),
        enc(with_(ts=_DROP))[:-1] + b',"ts":1e999}',
        enc(with_(ts=_DROP))[:-1] + b',"ts":-1e999}',
        enc(with_(ts=_DROP))[:-1] + b',"ts":' + b"9" * 400 + b"}",
    ],
    ids=["str", "null", "bool", "list", "zero", "negative", "neg-zero", "1e999", "-1e999", "huge-int"],
)
def test_bad_ts(payload):
    assert reasons(payload) == ["bad_ts"]


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
def test_nan_and_infinity_tokens_are_rejected(token):
    payload = enc(with_(ts=_DROP))[:-1] + b',"ts":' + token + b"}"
    got = reasons(payload)
    assert len(got) == 1 and got[0] in ("not_json", "bad_ts")


def test_missing_ts_is_a_rejection():
    got = reasons(enc(with_(ts=_DROP)))
    assert got in (["schema"], ["bad_ts"])


def test_future_ts():
    assert reasons(enc(with_(ts=NOW + 301.0))) == ["future_ts"]
    ok, bad = decode(enc(with_(ts=NOW + 299.0)))
    assert len(ok) == 1 and bad == []


def test_future_ts_uses_the_configured_skew_and_given_now():
    d = EventDecoder(max_future_s=10.0)
    ok, bad = d.decode(enc(with_(ts=NOW + 11.0)), now=NOW)
    assert [r.reason for r in bad] == ["future_ts"]
    ok, bad = d.decode(enc(with_(ts=NOW + 11.0)), now=NOW + 5.0)
    assert len(ok) == 1 and bad == []
    # A recorded file is trusted for time: now=inf turns the check off.
    ok, bad = d.decode(enc(with_(ts=1e15)), now=math.inf)
    assert len(ok) == 1 and bad == []


def test_created_ts_out_of_range_is_a_rejection_not_a_crash():
    payload = enc(with_(account_created_ts=_DROP))[:-1] + b',"account_created_ts":1e999}'
    ok, bad = decode(payload)
    assert len(ok) + len(bad) == 1
    for ev in ok:
        assert ev.account_created_ts is None
    assert all(r.reason in REASONS for r in bad)


@pytest.mark.parametrize(
    "payload",
    [
        enc(with_(event_id=_DROP))[:-1] + b',"event_id":"e\xff"}',
        b'{"event_id":"e","ts":1.0,"account_id":"\xc3\x28","ip":"10.0.0.1"}',
        b"\xff\xfe" + enc(MINIMAL),
        b"[" + enc(MINIMAL)[:-1] + b',"user_agent":"\xed\xa0\x80"}]',
    ],
)
def test_invalid_utf8(payload):
    assert reasons(payload) == ["not_json"]


def test_invalid_utf8_in_one_element_of_an_array_rejects_the_message_not_the_worker():
    payload = b"[" + enc(MINIMAL) + b"," + enc(with_(event_id=_DROP))[:-1] + b',"event_id":"\xff"}]'
    check_invariant(payload)


@pytest.mark.parametrize("depth", [100_000])
@pytest.mark.parametrize("shape", ["array", "object", "in_field", "in_array"])
def test_deep_nesting_does_not_crash(depth, shape):
    deep = b"[" * depth + b"]" * depth
    payload = {
        "array": deep,
        "object": b'{"a":' * depth + b"1" + b"}" * depth,
        "in_field": enc(MINIMAL)[:-1] + b',"x":' + deep + b"}",
        "in_array": b"[" + enc(MINIMAL) + b"," + deep + b"]",
    }[shape]
    ok, bad = decode(payload)
    assert bad and all(r.reason in REASONS for r in bad)
    assert len(bad) + len(ok) >= 1


def test_moderate_nesting_in_an_element_rejects_only_that_element():
    deep = b"[" * 200 + b"]" * 200
    ok, bad = decode(b"[" + enc(MINIMAL) + b"," + deep + b"]")
    assert len(ok) == 1 and [r.reason for r in bad] == ["not_object"]


@pytest.mark.xfail(
    reason="events.py _decode_slowly: msgspec recursion limit in _decode_raw_list rejects the whole array "
    "as not_json, so one deeply nested element takes its valid neighbours down with it",
    strict=True,
)
def test_deeply_nested_element_rejects_only_itself():
    deep = b"[" * 5000 + b"]" * 5000
    ok, bad = decode(b"[" + enc(MINIMAL) + b"," + deep + b"]")
    assert [e.event_id for e in ok] == ["e-1"]
    assert len(bad) == 1


def test_decoder_is_reusable_and_ip_cache_is_bounded():
    d = EventDecoder(ip_cache_size=8)
    for i in range(50):
        ok, bad = d.decode(enc(with_(ip=f"10.0.{i}.1")), now=NOW)
        assert len(ok) == 1
    assert len(d._ip_ok) <= 8
    # A cached verdict is still right for both kinds.
    for _ in range(3):
        assert [r.reason for r in d.decode(enc(with_(ip="10.0.0.300")), now=NOW)[1]] == ["bad_ip"]
        assert len(d.decode(enc(with_(ip="10.0.0.3")), now=NOW)[0]) == 1


def test_decode_lines_has_no_length_cap():
    evs = [with_(event_id=f"e{i}") for i in range(MAX_ARRAY + 5)]
    ok, bad = EventDecoder().decode_lines(enc(evs), now=NOW)
    assert len(ok) == MAX_ARRAY + 5 and bad == []


def test_decode_lines_keeps_good_elements_when_some_are_bad():
    evs = [with_(event_id=f"e{i}") for i in range(MAX_ARRAY + 5)] + [with_(ip="x.y")]
    ok, bad = EventDecoder().decode_lines(enc(evs), now=NOW)
    assert len(ok) == MAX_ARRAY + 5 and [r.reason for r in bad] == ["bad_ip"]


# --- properties ----------------------------------------------------------------------------------

FIELDS = list(FULL) + ["extra"]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["10.0.0.1", "2001:db8::1", "0123456789abcdef", "x" * 129, "", NOW, NOW + 1e6])
)
json_docs = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=8)
    ),
    max_leaves=30,
)
event_like = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=0, max_size=130) | json_scalars,
        "ts": st.floats(allow_nan=True, allow_infinity=True) | json_scalars,
        "account_id": st.text(min_size=1, max_size=5) | json_scalars,
        "ip": st.ip_addresses().map(str) | st.text(max_size=20) | json_scalars,
    },
    optional={k: json_scalars | st.text(max_size=600) for k in FULL if k not in MINIMAL},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(payload):
    check_invariant(payload)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.binary(max_size=60))
def test_arbitrary_bytes_around_a_valid_event_never_raise(head, tail):
    check_invariant(head + enc(MINIMAL) + tail)
    check_invariant(b"[" + enc(MINIMAL) + b"," + head + tail + b"]")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_docs)
def test_arbitrary_json_documents(doc):
    check_invariant(json.dumps(doc).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_like | json_docs, max_size=10))
def test_arbitrary_arrays_of_event_like_objects_add_up(docs):
    # json.dumps writes NaN/Infinity tokens, which are not JSON: that case is covered too.
    payload = json.dumps(docs).encode()
    check_invariant(payload)
    finite = "NaN" not in payload.decode() and "Infinity" not in payload.decode()
    if finite:
        ok, bad = decode(payload)
        assert len(ok) + len(bad) == len(docs)
        for r in bad:
            assert r.reason not in ("not_json", "too_large", "array_too_long")


@settings(max_examples=200, deadline=None)
@given(event_like)
def test_event_like_objects_accepted_iff_valid(doc):
    payload = json.dumps(doc).encode()
    ok, bad = decode(payload)
    assert len(ok) + len(bad) == 1
    for ev in ok:
        assert_valid_event(ev, NOW)
        assert ev.event_id == doc["event_id"] and ev.ip == doc["ip"]


# --- fuzz: mutated valid events -------------------------------------------------------------------

_WRONG = [
    None,
    True,
    False,
    0,
    -1,
    -(2**63),
    2**64,
    10**30,
    1.5,
    -0.0,
    1e308,
    "",
    "x",
    "-1",
    [],
    [1],
    {},
    {"a": 1},
    "x" * 129,
    "u" * 513,
    "y" * 70_000,
    "0123456789ABCDEF",
    "::1",
    "10.0.0.1",
]
_RAW_NUMBERS = [
    b"NaN",
    b"-Infinity",
    b"Infinity",
    b"1e999",
    b"-1e999",
    b"1e-999",
    b"-0",
    b"0e0",
    b"1" * 400,
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0x10",
    b"01",
    b"1.",
    b".5",
    b"+1",
]


def _mutate_doc(rng: random.Random) -> bytes:
    ev = dict(FULL) if rng.random() < 0.7 else dict(MINIMAL)
    ev["event_id"] = f"f{rng.randrange(10**9)}"
    ev["ts"] = NOW - rng.random() * 1000
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        key = rng.choice(list(FULL) + ["unknown_field"])
        if op == 0:
            ev.pop(key, None)
        elif op == 1:
            ev[key] = rng.choice(_WRONG)
        elif op == 2:
            ev[key] = rng.choice('ab\x00\u00e9\u2028\U0001f600\\"') * rng.choice(
                [1, 64, 128, 129, 512, 513, 5000]
            )
        elif op == 3:
            ev[key] = -rng.choice([1, 1.0, 1e-9, 1e300, 2**40])
        else:
            ev[key] = {"ts": NOW + rng.choice([0, 299, 301, 1e6]), "ip": "10.1.1.1/24"}.get(key, rng.random())
    raw = enc(ev)
    if rng.random() < 0.25:
        # A raw number JSON cannot express with json.dumps, in place of one field.
        key = rng.choice(["ts", "asn", "input_tokens", "output_tokens", "status", "account_created_ts"])
        raw = raw[:-1] + b',"' + key.encode() + b'":' + rng.choice(_RAW_NUMBERS) + b"}"
    return raw


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = bytes([rng.randrange(256)])
        elif op == 2 and b:
            del b[min(i, len(b) - 1)]
        elif op == 3:
            b[i:i] = rng.choice(
                [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"\xff", b"null", b"1e999"]
            )
        else:
            b = b[:i]
    return bytes(b)


def _fuzz_input(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.45:
        return _mutate_doc(rng)
    if kind < 0.8:
        return _mutate_bytes(rng, _mutate_doc(rng) if rng.random() < 0.5 else enc(FULL))
    n = rng.randint(0, 12)
    parts = [_mutate_doc(rng) if rng.random() < 0.8 else _mutate_bytes(rng, enc(MINIMAL)) for _ in range(n)]
    payload = b"[" + b",".join(parts) + b"]"
    return _mutate_bytes(rng, payload) if rng.random() < 0.2 else payload


FUZZ_SEEDS = [11, 22, 33, 44]
FUZZ_PER_SEED = 25_000  # 100,000 inputs in all, as the reliability issue asks


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_fuzz_mutated_events(seed):
    rng = random.Random(seed)
    decoder = EventDecoder()
    seen_reasons: set[str] = set()
    accepted = 0
    for _ in range(FUZZ_PER_SEED):
        payload = _fuzz_input(rng)
        now = NOW if rng.random() < 0.9 else rng.choice([0.0, 1e12, math.inf])
        ok, bad = check_invariant(payload, now=now, decoder=decoder)
        accepted += len(ok)
        seen_reasons.update(r.reason for r in bad)
    # The fuzzer reaches valid events and most rejection paths, or it tests little.
    assert accepted > 100
    assert {"not_json", "schema", "bad_ts", "not_object"} <= seen_reasons


def test_fuzz_volume_is_at_least_100000():
    assert len(FUZZ_SEEDS) * FUZZ_PER_SEED >= 100_000
