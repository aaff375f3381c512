"""Detector state per partition, and its snapshots in a Faust table.

Each assigned partition gets its own stage (and its own policy memory), so a
rebalance moves state with the partition. Hot state lives in plain objects and
is snapshotted at batch boundaries (never per event: every table write is a
changelog message), as a log per partition:

- a *delta* holds the accounts changed since the previous one (tombstones for
  expired ones), packed up to ``CHUNK`` accounts per message, with the
  partition's detector time and the offset of the last input message whose
  effects it contains;
- every ``compact_every`` deltas, or once the deltas outweigh twice the last
  base, a *base* rewrites the partition's whole live state and tombstones
  everything older, so the (compacted) changelog, and the table's copy of it in
  memory, stays about the size of the state.

Each by-account message says which input messages (source partition and
offset) its events came from; the stage remembers the last source offset it
applied per source partition, and a snapshot records those offsets with the
state they produced. A worker that takes a partition over reads the log back into
the stage before its first event, then skips any source message at or below
the restored offsets: input re-read after a crash is never counted twice. The
worker acknowledges by-account input only once a snapshot holds its effects, so
the committed offset never runs ahead of the state either.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from typing import Any

import msgspec

from detectors.account_stage import AccountStage
from detectors.accounts import AccountState
from detectors.config import DetectorConfig
from detectors.group_stage import GroupStage
from detectors.policy import Policy, Watermark
from stream import metrics

log = logging.getLogger(__name__)
CHUNK = 2000  # accounts per changelog message: about 200 KB
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()
Send = Callable[[int, bytes, "bytes | None"], None]


def pack_account(s: AccountState) -> bytes:
    return _enc.encode([s.v.tobytes(), s.n, s.last_net, s.switches, s.nets, s.ep_n])


def unpack_account(raw: bytes) -> AccountState:
    """
    >>> s = AccountState(first_ts=5.0, created=1.0)
    >>> s.update(6.0, net=3, out_tok=10, in_tok=5, learn=True)
    >>> t = unpack_account(pack_account(s))
    >>> (t.v == s.v, t.n, t.nets, t.last_ts)
    (True, 1, 8, 6.0)
    """
    floats, n, last_net, switches, nets, ep_n = _dec.decode(raw)
    s = AccountState.__new__(AccountState)
    s.v = array("d")
    s.v.frombytes(floats)
    s.n, s.last_net, s.switches, s.nets, s.ep_n = n, last_net, switches, nets, ep_n
    return s


def log_key(partition: int, seq: int) -> bytes:
    return b"%d/%012d" % (partition, seq)


def parse_log_key(key: bytes) -> tuple[int, int] | None:
    p, sep, seq = key.partition(b"/")
    if not sep or not p.isdigit() or not seq.isdigit():
        return None
    return int(p), int(seq)


def read_log(chunks: list[bytes]) -> tuple[dict[str, bytes], list]:
    """A partition's snapshot log, in sequence order, as the packed accounts it leaves and the last meta.

    >>> a = _enc.encode([[0.0, 1.0, {}, 0], {"x": b"1", "y": b"2"}])
    >>> b = _enc.encode([[0.0, 2.0, {0: 7}, 0], {"x": None}])
    >>> read_log([a, b])
    ({'y': b'2'}, [0.0, 2.0, {0: 7}, 0])
    """
    restored: dict[str, bytes] = {}
    meta: list = []
    for raw in chunks:
        meta, entries = _dec.decode(raw)
        for k, v in entries.items():
            if v is None:
                restored.pop(k, None)
            else:
                restored[k] = v
    return restored, meta


class SnapshotLog:
    """One partition's position in its snapshot log: next sequence number, where the base begins.

    >>> log_key(3, 17), parse_log_key(b"3/000000000017")
    (b'3/000000000017', (3, 17))
    """

    __slots__ = ("base_seq", "next_seq", "deltas", "applied", "changed", "base_bytes", "delta_bytes")

    def __init__(self) -> None:
        self.base_seq = 0
        self.next_seq = 0
        self.deltas = 0
        self.applied: dict[int, int] = {}  # source partition -> last source offset whose effects are in the stage
        self.changed = False  # applied moved since the last write
        self.base_bytes = 0
        self.delta_bytes = 0  # written since the base: a base is due once the deltas outweigh it


class _Partitions:
    """Stages keyed by partition: dropped when the partition is revoked, reconfigured in place."""

    cfg: DetectorConfig
    stages: dict

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self.stages.pop(p, None)

    def reconfigure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        for st in self.stages.values():
            st.reconfigure(cfg)


class AccountPartitions(_Partitions):
    """One AccountStage per assigned partition of the by-account topic, with its snapshot log."""

    def __init__(self, cfg: DetectorConfig, table: Any | None = None, compact_every: int = 60,
                 watermark: Watermark | None = None):
        """``watermark``: the worker's, shared by all its stages (decisions carry the latest time read)."""
        self.cfg = cfg
        self.watermark = watermark if watermark is not None else Watermark()
        self.table = table
        self.compact_every = compact_every
        self.stages: dict[int, AccountStage] = {}
        self.logs: dict[int, SnapshotLog] = {}

    def stage(self, partition: int) -> AccountStage:
        st = self.stages.get(partition)
        if st is None:
            st = AccountStage(self.cfg, Policy(self.cfg.policy, self.cfg.version, self.watermark))
            st.accounts.track_dirty = True
            self.logs[partition] = self._restore(partition, st)
            self.stages[partition] = st
        return st

    def drop(self, partitions: set[int]) -> None:
        super().drop(partitions)
        for p in partitions:
            self.logs.pop(p, None)

    def apply_source(self, partition: int, source_partition: int, source_offset: int) -> bool:
        """Whether events from this source message are new to the partition's stage; records them if so.

        A source partition's messages reach an account partition in offset order, so one number per
        source partition tells a message read again (at or below it) from new input."""
        lg = self.logs[partition]
        if source_offset <= lg.applied.get(source_partition, -1):
            return False
        lg.applied[source_partition] = source_offset
        lg.changed = True
        return True

    def snapshot(self, send: Send, partitions: set[int] | None = None) -> int:
        """Write each partition's changes since its last snapshot; returns how many accounts.

        Synchronous, called between batches: what it writes is exactly the effect of input up
        to the recorded offset."""
        n = 0
        for p, st in list(self.stages.items()):
            if partitions is not None and p not in partitions:
                continue
            lg = self.logs[p]
            acc = st.accounts
            dirty, acc.dirty = acc.dirty, set()
            removed, acc.removed = acc.removed, []
            if lg.deltas >= self.compact_every or lg.delta_bytes > 2 * lg.base_bytes + (1 << 20):
                n += self._write_base(p, st, lg, send)
                continue
            entries: dict[str, bytes | None] = {k: None for k in removed}
            for key in dirty:
                s = acc.states.get(key)
                if s is not None:
                    entries[key] = pack_account(s)
            if not entries and lg.next_seq > lg.base_seq and not lg.changed:
                continue
            lg.delta_bytes += self._write(p, st, lg, entries, send)
            lg.deltas += 1
            n += sum(1 for v in entries.values() if v is not None)
        return n

    def _write_base(self, p: int, st: AccountStage, lg: SnapshotLog, send: Send) -> int:
        old_from, old_to = lg.base_seq, lg.next_seq
        lg.base_seq = lg.next_seq
        entries: dict[str, bytes | None] = {k: pack_account(s) for k, s in st.accounts.states.items()}
        lg.base_bytes = self._write(p, st, lg, entries, send)
        for seq in range(old_from, old_to):
            send(p, log_key(p, seq), None)
        lg.deltas = 0
        lg.delta_bytes = 0
        return len(entries)

    def _write(self, p: int, st: AccountStage, lg: SnapshotLog, entries: dict[str, bytes | None],
               send: Send) -> int:
        meta = [st.start_ts, st.now, lg.applied, lg.base_seq]
        items = list(entries.items())
        written = 0
        for i in range(0, max(1, len(items)), CHUNK):
            raw = _enc.encode([meta, dict(items[i:i + CHUNK])])
            send(p, log_key(p, lg.next_seq), raw)
            lg.next_seq += 1
            written += len(raw)
        lg.changed = False
        return written

    def _restore(self, partition: int, st: AccountStage) -> SnapshotLog:
        lg = SnapshotLog()
        if self.table is None:
            return lg
        try:
            data = self.table.data
            found = sorted(seq for k in list(data.keys()) if (pk := parse_log_key(k)) and pk[0] == partition
                           for seq in (pk[1],))
            chunks = [data[log_key(partition, seq)] for seq in found]
        except Exception:  # noqa: BLE001 - a table still recovering answers nothing
            log.exception("partition %d: snapshot log unreadable; starting empty", partition)
            return lg
        if not found:
            return lg
        restored, meta = read_log(chunks)
        start_ts, now, applied, base_seq = meta
        states = st.accounts.states
        for k, v in restored.items():
            states[k] = unpack_account(v)
        st.start_ts, st.now = start_ts, now
        lg.base_seq, lg.next_seq = base_seq, found[-1] + 1
        lg.deltas = sum(1 for seq in found if seq >= base_seq)
        lg.applied = {int(k): int(v) for k, v in applied.items()}
        metrics.RESTORED.labels("account").inc(len(restored))
        log.info("partition %d: restored %d accounts, detector time %.3f, input offsets %s", partition,
                 len(restored), now, lg.applied)
        return lg


class GroupPartitions(_Partitions):
    """One GroupStage per assigned partition of the by-group topic; the routing sends it the keys hashed
    to its partition (``detectors.routing``)."""

    def __init__(self, cfg: DetectorConfig, watermark: Watermark | None = None):
        self.cfg = cfg
        self.watermark = watermark if watermark is not None else Watermark()
        self.stages: dict[int, GroupStage] = {}

    def stage(self, partition: int) -> GroupStage:
        st = self.stages.get(partition)
        if st is None:
            st = self.stages[partition] = GroupStage(self.cfg, Policy(self.cfg.policy, self.cfg.version,
                                                                      self.watermark))
        return st

