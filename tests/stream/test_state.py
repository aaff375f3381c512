"""Tests for stream/state.py: a partition's snapshot log restores its accounts and the input they hold."""

from __future__ import annotations

import random

import msgspec
import pytest

from detectors.config import DetectorConfig
from detectors.events import Event
from detectors.policy import Decision, Watermark
from detectors.routing import GroupRouter
from detectors.rules import RULES
from stream import state
from stream.state import AccountPartitions, GroupPartitions
from tests.detectors.rules.test_campaign import TEMPLATES, _near
from tests.detectors.streams import T0, Stream

GROUP_RULES = {r.name for r in RULES if r.stage in ("network", "cluster")}



class TableData:
    """What the worker's Faust table gives the snapshot log: ``data``, a mapping of log keys to chunks."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value


def test_a_restarted_partition_skips_exactly_the_input_its_snapshot_holds():
    cfg = DetectorConfig()
    table = TableData()
    before = AccountPartitions(cfg, table=table)
    stage = before.stage(0)
    events = [Event(event_id=f"e{i}", ts=T0 + i, account_id=f"a{i % 3}", ip="198.51.100.7") for i in range(30)]
    for offset, chunk in enumerate((events[:10], events[10:20])):
        assert before.apply_source(0, source_partition=2, source_offset=offset)
        for e in chunk:
            stage.process_one(e, [], [])
    assert not before.apply_source(0, source_partition=2, source_offset=1)  # read twice in one life
    before.snapshot(table.put)
    # One more input message after the snapshot, then the worker dies: nothing of it was written.
    assert before.apply_source(0, source_partition=2, source_offset=2)
    for e in events[20:]:
        stage.process_one(e, [], [])

    after = AccountPartitions(cfg, table=table)
    restored = after.stage(0)
    assert sum(s.n for s in restored.accounts.states.values()) == 20
    assert restored.now == T0 + 19
    # Re-read from the last commit: what the snapshot holds is skipped, the lost message is new again.
    assert [after.apply_source(0, 2, offset) for offset in (0, 1, 2)] == [False, False, True]
    assert after.apply_source(0, source_partition=5, source_offset=0)  # each source partition on its own


def _kept(table: TableData, drop: set[bytes]) -> TableData:
    """The table a crash leaves when the chunks ``drop`` never reached the broker."""
    left = TableData()
    left.data = {k: v for k, v in table.data.items() if k not in drop}
    return left


def test_a_write_cut_between_its_chunks_is_left_out_with_its_offsets(monkeypatch):
    monkeypatch.setattr(state, "CHUNK", 4)  # ten accounts: a write of three chunks
    cfg = DetectorConfig()
    table = TableData()
    before = AccountPartitions(cfg, table=table)
    stage = before.stage(0)
    sent: list[bytes] = []

    def put(p: int, key: bytes, value: bytes | None) -> None:
        sent.append(key)
        table.put(p, key, value)

    for offset in range(2):
        assert before.apply_source(0, source_partition=1, source_offset=offset)
        for i in range(10):
            stage.process_one(Event(event_id=f"e{offset}.{i}", ts=T0 + offset * 10 + i, account_id=f"a{i}",
                                    ip="198.51.100.7"), [], [])
        del sent[:]
        before.snapshot(put)
        assert len(sent) == 3
    # The crash: the second write's first chunk is on the broker, the other two are not.
    after = AccountPartitions(cfg, table=_kept(table, set(sent[1:])))
    restored = after.stage(0)
    assert {k: s.n for k, s in restored.accounts.states.items()} == {f"a{i}": 1 for i in range(10)}
    assert [after.apply_source(0, 1, offset) for offset in (0, 1)] == [False, True]  # offset 1 is read again
    # The next write goes past the torn one; a base later tombstones it, and the log reads whole again.
    for i in range(10):
        restored.process_one(Event(event_id=f"e1.{i}", ts=T0 + 10 + i, account_id=f"a{i}", ip="198.51.100.7"),
                             [], [])
    after.snapshot(table.put)
    again = AccountPartitions(cfg, table=table).stage(0)
    assert {k: s.n for k, s in again.accounts.states.items()} == {f"a{i}": 2 for i in range(10)}
    after.compact_every = 0
    after.snapshot(table.put)
    assert sum(1 for k in table.data if k.startswith(b"0/")) == 3  # the base alone


def test_a_torn_base_leaves_the_previous_base_and_deltas(monkeypatch):
    monkeypatch.setattr(state, "CHUNK", 4)
    cfg = DetectorConfig()
    table = TableData()
    parts = AccountPartitions(cfg, table=table, compact_every=2)
    stage = parts.stage(0)
    sent: list[tuple[bytes, bytes | None]] = []

    def put(p: int, key: bytes, value: bytes | None) -> None:
        sent.append((key, value))
        table.put(p, key, value)

    for offset in range(3):  # a delta, a delta, then a base of three chunks
        parts.apply_source(0, 0, offset)
        for i in range(10):
            stage.process_one(Event(event_id=f"e{offset}.{i}", ts=T0 + offset * 10 + i, account_id=f"a{i}",
                                    ip="198.51.100.7"), [], [])
        del sent[:]
        kept = dict(table.data)
        parts.snapshot(put)
    assert [v is None for _, v in sent] == [False] * 3 + [True] * 6  # the base, then the old writes' tombstones
    # Cut after the base's first chunk: its other chunks and the tombstones never went out.
    torn = TableData()
    torn.data = kept
    torn.put(0, *sent[0])
    after = AccountPartitions(cfg, table=torn)
    assert {k: s.n for k, s in after.stage(0).accounts.states.items()} == {f"a{i}": 2 for i in range(10)}
    assert [after.apply_source(0, 0, o) for o in (1, 2)] == [False, True]


def glacial(accounts: int = 40, seed: int = 7, t0: float = T0) -> list[Event]:
    """A slow campaign: an account joins every four minutes and makes four requests ten minutes apart, on
    shared cards, templates and an exit pool; a few people as background. Lasts ``glacial_s(accounts)``."""
    rng = random.Random(seed)
    s = Stream()
    s.background(t0, t0 + glacial_s(accounts))
    for i in range(accounts):
        t = t0 + 300.0 + i * 240.0
        for _ in range(4):
            s.add(t, f"member{i}", f"10.9.{rng.randrange(8)}.{rng.randrange(1, 250)}",
                  account_created_ts=t - rng.uniform(600, 3600), payment_fp=f"card{i % 4}",
                  prompt_fp=_near(rng.choice(TEMPLATES), rng), user_agent="sdk/1.0", input_tokens=60,
                  output_tokens=900)
            t += 600.0 * rng.uniform(0.9, 1.1)
    return s.sorted()


def glacial_s(accounts: int) -> float:
    return 300.0 + accounts * 240.0 + 3000.0


class OnePartition:
    """A worker holding partition 0 of both topics, in-process: every event through its account stage,
    every observation through its group stage, snapshots into ``tables``."""

    def __init__(self, cfg: DetectorConfig, tables: tuple[TableData, TableData], compact_every: int = 60):
        wm = Watermark()
        self.tables = tables
        self.accounts = AccountPartitions(cfg, table=tables[0], compact_every=compact_every, watermark=wm)
        self.groups = GroupPartitions(cfg, table=tables[1], compact_every=compact_every, watermark=wm)
        self.router = GroupRouter(cfg.cluster, partitions=1)

    def run(self, events: list[Event], snapshot_every: int = 0) -> list[Decision]:
        decisions: list[Decision] = []
        for i, e in enumerate(events):
            o = self.accounts.stage(0).process_one(e, decisions, [])
            if o is not None:
                self.router.visit_all_here(self.groups.stage(0), o, decisions)
            if snapshot_every and i % snapshot_every == 0:
                self.snapshot()
        return decisions

    def snapshot(self) -> None:
        self.accounts.snapshot(self.tables[0].put)
        self.groups.snapshot(self.tables[1].put)


def _group_said(decisions: list[Decision]) -> list[tuple]:
    return [(d.ts, d.scope, d.key, d.action, d.reason, d.ttl_s) for d in decisions
            if d.reason in GROUP_RULES]


@pytest.mark.parametrize("compact_every", [60, 2], ids=["deltas", "bases"])
def test_a_restarted_worker_decides_a_campaigns_next_accounts_as_an_uninterrupted_one(monkeypatch, compact_every):
    monkeypatch.setattr(state, "CHUNK", 7)  # writes of several chunks, small as the test is
    cfg = DetectorConfig()
    events = glacial()
    cut = len(events) // 2
    whole = OnePartition(cfg, (TableData(), TableData())).run(events)
    members = {d.key for d in whole if d.key.startswith("member") and d.reason == "campaign"}
    assert len(members) >= 20  # the uninterrupted worker finds it: the test is about finding it again

    first = OnePartition(cfg, (TableData(), TableData()), compact_every=compact_every)
    before = first.run(events[:cut], snapshot_every=50)
    first.snapshot()
    second = OnePartition(cfg, first.tables)
    assert len(second.groups.stage(0).clusters) == len(first.groups.stage(0).clusters) > 0
    after = second.run(events[cut:])
    assert _group_said(before + after) == _group_said(whole)


def test_group_state_snapshots_hold_only_what_the_stage_holds():
    cfg = DetectorConfig()
    run = OnePartition(cfg, (TableData(), TableData()), compact_every=3)
    run.run(glacial(accounts=20), snapshot_every=10)
    st = run.groups.stage(0)
    st._expire(st.now + 10 * 86400.0)  # everything idle: the stage empties, and so does its log
    run.snapshot()
    run.groups.compact_every = 0
    run.snapshot()
    restored = OnePartition(cfg, run.tables).groups.stage(0)
    assert (len(restored.clusters), len(restored.networks), restored.decided) == (0, 0, {})
    assert len(run.tables[1].data) <= 2 + sum(1 for b in range(0, 8 * cfg.cluster.seen_once_slots, state.SEEN_BLOCK))


def test_an_awakened_account_on_any_address_survives_a_group_snapshot():
    # The addresses an awakened account used on its network are a 256-bit set: the last octet 255
    # once crashed every snapshot (msgpack integers stop at 64 bits), and with it the worker.
    cfg = DetectorConfig()
    run = OnePartition(cfg, (TableData(), TableData()))
    st = run.groups.stage(0)
    tracker = st.networks
    ns = tracker.observe("203.0.113.0/24", "stolen", 1000.0, False, True, 900, 100)
    tracker.mark_awakened(ns, "stolen", 1000.0, address=255, client=7)
    tracker.mark_awakened(ns, "stolen", 1001.0, address=3, client=7)
    run.snapshot()
    restored = OnePartition(cfg, run.tables).groups.stage(0).networks.networks["203.0.113.0/24"]
    assert restored.awakened == {"stolen": (1001.0, 1 << 255 | 1 << 3, 7)}


def test_a_failed_group_snapshot_is_made_good_by_the_next_one(monkeypatch):
    # A delta takes the trackers' dirty marks before it encodes them: when it fails, the next snapshot
    # must write the partition whole, or what the failed one held is in no snapshot at all.
    cfg = DetectorConfig()
    run = OnePartition(cfg, (TableData(), TableData()))
    run.run(glacial(accounts=20))
    run.snapshot()
    later = glacial(accounts=20, seed=8, t0=T0 + glacial_s(20))  # more of it, after the snapshot
    run.run([msgspec.structs.replace(e, event_id="later-" + e.event_id) for e in later])
    st = run.groups.stage(0)
    assert st.clusters.dirty or st.networks.dirty
    real = state.GroupPartitions._delta

    def broken(self, stage, lg):
        real(self, stage, lg)  # takes the dirty marks, as an encoding failure halfway would
        raise OverflowError("can't serialize")
    monkeypatch.setattr(state.GroupPartitions, "_delta", broken)
    with pytest.raises(OverflowError):
        run.groups.snapshot(run.tables[1].put)
    monkeypatch.setattr(state.GroupPartitions, "_delta", real)
    run.groups.snapshot(run.tables[1].put)
    restored = OnePartition(cfg, run.tables).groups.stage(0)
    assert set(restored.clusters.clusters) == set(st.clusters.clusters)
    assert set(restored.networks.networks) == set(st.networks.networks)


def test_a_failed_base_write_leaves_the_next_base_to_clear_the_old_log(monkeypatch):
    cfg = DetectorConfig()
    run = OnePartition(cfg, (TableData(), TableData()), compact_every=3)
    run.run(glacial(accounts=20), snapshot_every=40)  # a base and deltas in the log
    table = run.tables[1]
    lg = run.groups.logs[0]
    lg.deltas = run.groups.compact_every  # the next write is a base
    real = state._Partitions._write

    def broken(self, *args, **kwargs):
        raise OverflowError("can't serialize")
    monkeypatch.setattr(state._Partitions, "_write", broken)
    with pytest.raises(OverflowError):
        run.groups.snapshot(table.put)
    monkeypatch.setattr(state._Partitions, "_write", real)
    run.groups.snapshot(table.put)
    seqs = sorted(pk[1] for k in table.data if (pk := state.parse_log_key(k)) and pk[0] == 0)
    assert seqs and seqs[0] == lg.base_seq  # only the new base's chunks: the old log was cleared
    restored = OnePartition(cfg, run.tables).groups.stage(0)
    assert set(restored.clusters.clusters) == set(run.groups.stage(0).clusters.clusters)
