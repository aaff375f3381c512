"""Tests for stream/state.py: a partition's snapshot log restores its accounts and the input they hold."""

from __future__ import annotations

from detectors.config import DetectorConfig
from detectors.events import Event
from stream.state import AccountPartitions

T0 = 1_790_000_000.0


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
