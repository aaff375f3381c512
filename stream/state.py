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

A write of several messages counts all or nothing (``read_log``): each names the
write and its number of messages, and only the last carries the meta with the
input offsets, so input whose effects a torn write held is read again. Account
stages and group stages (``account_state``, ``group_state``) keep the same kind
of log.

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
from detectors.clusters import ClusterState
from detectors.config import DetectorConfig
from detectors.group_stage import GroupStage
from detectors.network import NetworkState
from detectors.policy import Policy, Watermark
from stream import metrics

log = logging.getLogger(__name__)
CHUNK = 2000  # entries per changelog message: 2,000 accounts are about 200 KB
CHUNK_BYTES = 512 << 10  # and about this much at most (cluster states and filter blocks are larger)
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()
Send = Callable[[int, bytes, "bytes | None"], None]


def pack_account(s: AccountState) -> bytes:
    return _enc.encode([s.v.tobytes(), s.n, s.last_net, s.switches, s.nets, s.ep_n, s.ep_new_net, s.nets_hi])


def unpack_account(raw: bytes) -> AccountState:
    """
    >>> s = AccountState(first_ts=5.0, created=1.0)
    >>> s.update(6.0, net=3, out_tok=10, in_tok=5, learn=True)
    >>> t = unpack_account(pack_account(s))
    >>> (t.v == s.v, t.n, t.nets, t.last_ts, t.ep_new_net)
    (True, 1, 8, 6.0, True)
    """
    floats, n, last_net, switches, nets, ep_n, *rest = _dec.decode(raw)
    s = AccountState.__new__(AccountState)
    s.v = array("d")
    s.v.frombytes(floats)
    s.n, s.last_net, s.switches, s.nets, s.ep_n = n, last_net, switches, nets, ep_n
    # A snapshot from before these two: every episode counts as on a new network, as the detector then did.
    s.ep_new_net, s.nets_hi = rest if rest else (True, 0)
    return s


def log_key(partition: int, seq: int) -> bytes:
    return b"%d/%012d" % (partition, seq)


def parse_log_key(key: bytes) -> tuple[int, int] | None:
    p, sep, seq = key.partition(b"/")
    if not sep or not p.isdigit() or not seq.isdigit():
        return None
    return int(p), int(seq)


def read_log(chunks: list[bytes]) -> tuple[dict[str, bytes], list]:
    """A partition's snapshot log, in sequence order, as the packed entries it leaves and the last meta.

    A chunk is ``[write, chunks, meta, entries]``: the sequence number its write began at, how many
    chunks the write has, and the meta in the last one only. A write counts once all its chunks are
    there (a crash between two leaves it out, and its input is read again); the last whole write's
    meta says where the base begins, and older writes are left out too.

    >>> a = _enc.encode([0, 1, [0.0, 1.0, {}, 0], {"x": b"1", "y": b"2"}])
    >>> b = _enc.encode([1, 1, [0.0, 2.0, {0: 7}, 0], {"x": None}])
    >>> c = _enc.encode([2, 2, None, {"y": b"3"}])   # its second chunk never came
    >>> read_log([a, b, c])
    ({'y': b'2'}, [0.0, 2.0, {0: 7}, 0])
    """
    whole: list[tuple[int, list, list[dict]]] = []  # complete writes: (first seq, meta, entries per chunk)
    write = -1  # the write being read, and its chunks so far
    parts: list[dict] = []
    for raw in chunks:
        chunk = _dec.decode(raw)
        if len(chunk) == 2:  # before writes had several chunks: every chunk was whole
            whole.append((-1, chunk[0], [chunk[1]]))
            continue
        w, count, meta, entries = chunk
        if w != write:
            write, parts = w, []
        parts.append(entries)
        if len(parts) == count and meta is not None:
            whole.append((w, meta, parts))
            write, parts = -1, []
    if not whole:
        return {}, []
    meta = whole[-1][1]
    base = meta[-1]
    restored: dict[str, bytes] = {}
    for w, _, parts in whole:
        if 0 <= w < base:
            continue  # before the base: its tombstones may not all have been written
        for entries in parts:
            for k, v in entries.items():
                if v is None:
                    restored.pop(k, None)
                else:
                    restored[k] = v
    return restored, meta


def write_complete(raw: bytes) -> bool:
    """Whether this chunk is the last of its write (a test kills the worker after one that is not)."""
    chunk = _dec.decode(raw)
    return len(chunk) == 2 or chunk[2] is not None


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
    """Stages keyed by partition, each with a snapshot log in a Faust table: dropped when the partition is
    revoked, reconfigured in place, restored before their first event."""

    kind = ""  # the ``ratehound_state_restored_total`` label

    def __init__(self, cfg: DetectorConfig, table: Any | None = None, compact_every: int = 60,
                 watermark: Watermark | None = None):
        """``watermark``: the worker's, shared by all its stages (decisions carry the latest time read)."""
        self.cfg = cfg
        self.watermark = watermark if watermark is not None else Watermark()
        self.table = table
        self.compact_every = compact_every
        self.stages: dict[int, Any] = {}
        self.logs: dict[int, Any] = {}

    def stage(self, partition: int) -> Any:
        st = self.stages.get(partition)
        if st is None:
            st = self._new_stage(Policy(self.cfg.policy, self.cfg.version, self.watermark))
            self.logs[partition] = self._restore(partition, st)
            self.stages[partition] = st
        return st

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self.stages.pop(p, None)
            self.logs.pop(p, None)

    def reconfigure(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        for st in self.stages.values():
            st.reconfigure(cfg)

    def apply_source(self, partition: int, source_partition: int, source_offset: int) -> bool:
        """Whether events from this source message are new to the partition's stage; records them if so.

        A source partition's messages reach a stage's partition in offset order, so one number per
        source partition tells a message read again (at or below it) from new input."""
        lg = self.logs[partition]
        if source_offset <= lg.applied.get(source_partition, -1):
            return False
        lg.applied[source_partition] = source_offset
        lg.changed = True
        return True

    # A kind of stage: a new one, its log, its head (a few numbers, in the meta), what changed, everything.
    def _new_stage(self, policy: Policy) -> Any:
        raise NotImplementedError

    def _new_log(self) -> SnapshotLog:
        return SnapshotLog()

    def _head(self, st: Any) -> list:
        raise NotImplementedError

    def _delta(self, st: Any, lg: Any) -> dict[str, bytes | None]:
        raise NotImplementedError

    def _base(self, st: Any, lg: Any) -> dict[str, bytes | None]:
        raise NotImplementedError

    def _load(self, st: Any, lg: Any, restored: dict[str, bytes], head: list) -> None:
        raise NotImplementedError

    def snapshot(self, send: Send, partitions: set[int] | None = None) -> int:
        """Write each partition's changes since its last snapshot; returns how many entries.

        Synchronous, called between batches: what it writes is exactly the effect of input up
        to the recorded offset."""
        n = 0
        for p, st in list(self.stages.items()):
            if partitions is not None and p not in partitions:
                continue
            lg = self.logs[p]
            try:
                n += self._snapshot_one(p, st, lg, send)
            except Exception:
                # What the failed delta took from the stage's dirty sets is in no write: the next
                # snapshot of this partition writes it whole. The caller acknowledges nothing.
                lg.deltas = self.compact_every
                raise
        return n

    def _snapshot_one(self, p: int, st: Any, lg: SnapshotLog, send: Send) -> int:
        if lg.deltas >= self.compact_every or lg.delta_bytes > 2 * lg.base_bytes + (1 << 20):
            return self._write_base(p, st, lg, send)
        entries = self._delta(st, lg)
        if not entries and lg.next_seq > lg.base_seq and not lg.changed:
            return 0
        lg.delta_bytes += self._write(p, st, lg, entries, send)
        lg.deltas += 1
        return sum(1 for v in entries.values() if v is not None)

    def _write_base(self, p: int, st: Any, lg: SnapshotLog, send: Send) -> int:
        old_from, old_to = lg.base_seq, lg.next_seq
        lg.base_seq = lg.next_seq
        try:
            entries = self._base(st, lg)
            lg.base_bytes = self._write(p, st, lg, entries, send)
        except Exception:
            lg.base_seq = old_from  # the base that replaces this one must still clear the old log
            raise
        for seq in range(old_from, old_to):
            send(p, log_key(p, seq), None)
        lg.deltas = 0
        lg.delta_bytes = 0
        return len(entries)

    def _write(self, p: int, st: Any, lg: SnapshotLog, entries: dict[str, bytes | None], send: Send) -> int:
        """One write: its entries in chunks of at most ``CHUNK`` entries or about ``CHUNK_BYTES``, the
        meta (and so the input offsets) in the last, so the write counts all or nothing (``read_log``)."""
        meta = [*self._head(st), lg.applied, lg.base_seq]
        parts: list[dict[str, bytes | None]] = []
        part: dict[str, bytes | None] = {}
        size = 0
        for k, v in entries.items():
            part[k] = v
            size += len(k) + (len(v) if v is not None else 0)
            if len(part) >= CHUNK or size >= CHUNK_BYTES:
                parts.append(part)
                part, size = {}, 0
        if part or not parts:
            parts.append(part)
        write, count = lg.next_seq, len(parts)
        written = 0
        for i, part in enumerate(parts):
            raw = _enc.encode([write, count, meta if i == count - 1 else None, part])
            send(p, log_key(p, lg.next_seq), raw)
            lg.next_seq += 1
            written += len(raw)
        lg.changed = False
        return written

    def _restore(self, partition: int, st: Any) -> SnapshotLog:
        lg = self._new_log()
        if self.table is None:
            return lg
        try:
            data = self.table.data
            found = sorted(seq for k in list(data.keys()) if (pk := parse_log_key(k)) and pk[0] == partition
                           for seq in (pk[1],))
            chunks = [data[log_key(partition, seq)] for seq in found]
        except Exception:  # noqa: BLE001 - a table still recovering answers nothing
            log.exception("partition %d: %s snapshot log unreadable; starting empty", partition, self.kind)
            return lg
        if not found:
            return lg
        lg.next_seq = found[-1] + 1  # past any write a crash left incomplete: the next base tombstones it
        restored, meta = read_log(chunks)
        if not meta:
            return lg
        *head, applied, base_seq = meta
        self._load(st, lg, restored, head)
        lg.base_seq = base_seq
        lg.deltas = sum(1 for seq in found if seq >= base_seq)
        lg.applied = {int(k): int(v) for k, v in applied.items()}
        metrics.RESTORED.labels(self.kind).inc(len(restored))
        log.info("partition %d: restored %d %s entries, detector time %.3f, input offsets %s", partition,
                 len(restored), self.kind, st.now, lg.applied)
        return lg


class AccountPartitions(_Partitions):
    """One AccountStage per assigned partition of the by-account topic, with its snapshot log."""

    kind = "account"
    stages: dict[int, AccountStage]

    def stage(self, partition: int) -> AccountStage:
        st: AccountStage = super().stage(partition)
        return st

    def _new_stage(self, policy: Policy) -> AccountStage:
        st = AccountStage(self.cfg, policy)
        st.accounts.track_dirty = True
        return st

    def _head(self, st: AccountStage) -> list:
        return [st.start_ts, st.now]

    def _delta(self, st: AccountStage, lg: SnapshotLog) -> dict[str, bytes | None]:
        acc = st.accounts
        dirty, acc.dirty = acc.dirty, set()
        removed, acc.removed = acc.removed, []
        entries: dict[str, bytes | None] = {k: None for k in removed}
        for key in dirty:
            s = acc.states.get(key)
            if s is not None:
                entries[key] = pack_account(s)
        return entries

    def _base(self, st: AccountStage, lg: SnapshotLog) -> dict[str, bytes | None]:
        acc = st.accounts
        acc.dirty, acc.removed = set(), []
        return {k: pack_account(s) for k, s in acc.states.items()}

    def _load(self, st: AccountStage, lg: SnapshotLog, restored: dict[str, bytes], head: list) -> None:
        states = st.accounts.states
        for k, v in restored.items():
            states[k] = unpack_account(v)
        st.start_ts, st.now = head
        self.watermark.advance(st.now)


class GroupLog(SnapshotLog):
    """A group partition's log, with what its last write held of the state that has no dirty marks: the
    seen-once table, the accounts decided on, the policy's ledger."""

    __slots__ = ("seen", "seen_writes", "decided", "ledger")

    def __init__(self) -> None:
        super().__init__()
        self.seen = b""
        self.seen_writes = -1  # the tracker's count of writes to the table when the log last looked
        self.decided: dict[str, float] = {}
        self.ledger: dict[tuple[str, str], tuple[int, float, float]] = {}


SEEN_BLOCK = 4096  # bytes of the seen-once table compared at once; a base writes such blocks, a delta slots


def _dict_delta(prefix: str, cur: dict, last: dict, entries: dict[str, bytes | None], name: Callable) -> None:
    for k in last.keys() - cur.keys():
        entries[prefix + name(k)] = None
    for k, v in cur.items():
        if last.get(k) != v:
            entries[prefix + name(k)] = _enc.encode(v)


def _ledger_name(k: tuple[str, str]) -> str:
    return k[0] + "\0" + k[1]


def _same(k: str) -> str:
    return k


class GroupPartitions(_Partitions):
    """One GroupStage per assigned partition of the by-group topic, with its snapshot log; the routing sends
    it the keys hashed to its partition (``detectors.routing``).

    Its log holds the clusters (``c``), networks and ASNs (``n``), the table of keys seen once (blocks in
    use ``S`` in a base, slots changed ``s`` in a delta), the accounts decided on (``d``) and the policy's
    ledger (``l``), each entry named ``kind NUL key``: all bounded as the stage is, since the log holds only
    what the stage holds."""

    kind = "group"
    stages: dict[int, GroupStage]

    def stage(self, partition: int) -> GroupStage:
        st: GroupStage = super().stage(partition)
        return st

    def _new_stage(self, policy: Policy) -> GroupStage:
        st = GroupStage(self.cfg, policy)
        st.clusters.track_dirty = st.networks.track_dirty = True
        return st

    def _new_log(self) -> GroupLog:
        return GroupLog()

    def _head(self, st: GroupStage) -> list:
        return st.export_head()

    def _delta(self, st: GroupStage, lg: GroupLog) -> dict[str, bytes | None]:
        entries: dict[str, bytes | None] = {}
        for prefix, tracker, live in (("c\0", st.clusters, st.clusters.clusters),
                                      ("n\0", st.networks, st.networks.networks)):
            dirty, tracker.dirty = tracker.dirty, set()
            removed, tracker.removed = tracker.removed, []
            for k in removed:
                entries[prefix + k] = None
            for k in dirty:
                x = live.get(k)
                entries[prefix + k] = None if x is None else _enc.encode(x.pack())
        self._rest(st, lg, entries)
        return entries

    def _base(self, st: GroupStage, lg: GroupLog) -> dict[str, bytes | None]:
        cl, nw = st.clusters, st.networks
        cl.dirty, cl.removed, nw.dirty, nw.removed = set(), [], set(), []
        entries: dict[str, bytes | None] = {"c\0" + k: _enc.encode(c.pack()) for k, c in cl.clusters.items()}
        entries.update(("n\0" + k, _enc.encode(n.pack())) for k, n in nw.networks.items())
        lg.seen, lg.decided, lg.ledger = b"", {}, {}
        self._rest(st, lg, entries)
        return entries

    @staticmethod
    def _rest(st: GroupStage, lg: GroupLog, entries: dict[str, bytes | None]) -> None:
        """What changed of the state without dirty marks since the log's last write (everything that is
        there, after a base cleared what the log last held)."""
        table = st.clusters.seen
        seen = table.tobytes() if not lg.seen or st.clusters.seen_writes != lg.seen_writes else lg.seen
        lg.seen_writes = st.clusters.seen_writes
        if seen is lg.seen:
            pass  # not written since the log last looked: nothing to compare
        elif not lg.seen:  # a base: the blocks in use
            zero = bytes(SEEN_BLOCK)
            for i in range(0, len(seen), SEEN_BLOCK):
                if seen[i:i + SEEN_BLOCK] != zero:
                    entries[f"S\0{i // SEEN_BLOCK}"] = seen[i:i + SEEN_BLOCK]
        else:  # a delta: the slots that changed, found a block at a time
            last = lg.seen
            step = SEEN_BLOCK // 8
            for i in range(0, len(seen), SEEN_BLOCK):
                if seen[i:i + SEEN_BLOCK] != last[i:i + SEEN_BLOCK]:
                    was = array("Q", last[i:i + SEEN_BLOCK])
                    at = i // 8
                    for j, v in enumerate(table[at:at + step]):
                        if v != was[j]:
                            entries[f"s\0{at + j}"] = _enc.encode(v)
        lg.seen = seen
        _dict_delta("d\0", st.decided, lg.decided, entries, _same)
        lg.decided = dict(st.decided)
        ledger = st.policy.ledger.active
        _dict_delta("l\0", ledger, lg.ledger, entries, _ledger_name)
        lg.ledger = dict(ledger)

    def _load(self, st: GroupStage, lg: GroupLog, restored: dict[str, bytes], head: list) -> None:
        clusters, networks = st.clusters.clusters, st.networks.networks
        seen = st.clusters.seen
        ledger = st.policy.ledger.active
        slots = []
        for k, v in restored.items():
            kind, _, name = k.partition("\0")
            if kind == "c":
                clusters[name] = ClusterState.unpack(_dec.decode(v))
            elif kind == "n":
                networks[name] = NetworkState.unpack(_dec.decode(v))
            elif kind == "S":
                at = int(name) * SEEN_BLOCK // 8
                if at + len(v) // 8 <= len(seen):  # the table's size is the config's: a resized one starts anew
                    seen[at:at + len(v) // 8] = array("Q", v)
            elif kind == "s":
                slots.append((int(name), v))  # after the blocks: a delta's slots are newer than the base's blocks
            elif kind == "d":
                st.decided[name] = _dec.decode(v)
            elif kind == "l":
                scope, _, key = name.partition("\0")
                ledger[(scope, key)] = tuple(_dec.decode(v))
        for at, v in slots:
            if at < len(seen):
                seen[at] = _dec.decode(v)
        st.restore_head(head)
        self.watermark.advance(st.now)
        lg.seen, lg.decided, lg.ledger = seen.tobytes(), dict(st.decided), dict(ledger)
        lg.seen_writes = st.clusters.seen_writes
