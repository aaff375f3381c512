"""What travels on ratehound's own topics: encodings of events, observations, DLQ entries, decisions."""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from detectors.events import Event, Reject
from detectors.routing import GroupItem, partition_of


class SourcedEvents(msgspec.Struct, array_like=True, gc=False):
    """Events of one input message bound for one account partition, with where they came from:
    the account stage remembers the last source offset it applied, so input read again never counts twice."""

    partition: int
    offset: int
    events: list[Event]


_enc = msgspec.msgpack.Encoder()
_dec_events = msgspec.msgpack.Decoder(list[SourcedEvents])
_dec_obs = msgspec.msgpack.Decoder(list[GroupItem])


class PartitionMemo(dict[str, int]):
    """``partition_of`` for one partition count, remembered: network, ASN and cluster keys repeat,
    and a dict hit costs a fraction of encoding and hashing the key again. Bounded.

    >>> memo = PartitionMemo(4)
    >>> memo["acct_1"] == partition_of("acct_1", 4), len(memo)
    (True, 1)
    """

    def __init__(self, partitions: int, capacity: int = 200_000):
        super().__init__()
        self.partitions = partitions
        self.capacity = capacity

    def __missing__(self, key: str) -> int:
        if len(self) >= self.capacity:
            self.clear()
        p = self[key] = partition_of(key, self.partitions)
        return p


def encode_events(groups: list[SourcedEvents]) -> bytes:
    return _enc.encode(groups)


def decode_events(payload: bytes) -> list[SourcedEvents]:
    """
    >>> e = Event(event_id="e1", ts=1.0, account_id="a", ip="192.0.2.1")
    >>> decode_events(encode_events([SourcedEvents(2, 41, [e])]))[0].offset
    41
    """
    return _dec_events.decode(payload)


def encode_observations(items: list[GroupItem]) -> bytes:
    return _enc.encode(items)


def decode_observations(payload: bytes) -> list[GroupItem]:
    return _dec_obs.decode(payload)


class DeadLetter(msgspec.Struct):
    """One rejected input on the dead-letter topic: why, and the input itself (truncated)."""

    reason: str
    detail: str
    raw: str
    topic: str
    partition: int
    offset: int
    at: float


def dead_letters(rejects: Iterable[Reject], topic: str, partition: int, offset: int) -> list[DeadLetter]:
    """The rejects of one input message as dead letters (``offset`` -1: not one message, e.g. a stage's batch).

    >>> [letter] = dead_letters([Reject("bad_ip", "ip=999.1.1.1", b'{"ip":"999.1.1.1"}')], "requests", 3, 41)
    >>> (letter.reason, letter.raw, letter.topic, letter.partition, letter.offset)
    ('bad_ip', '{"ip":"999.1.1.1"}', 'requests', 3, 41)
    """
    now = time.time()
    return [DeadLetter(r.reason, r.detail, r.raw[:65536].decode("utf-8", "backslashreplace"), topic, partition,
                       offset, now) for r in rejects]


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return msgspec.json.encode(letter)
