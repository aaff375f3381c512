"""Tests for detectors/dedupe.py: duplicate deliveries counted once, in bounded memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from detectors.dedupe import RecentIds


def test_repeats_are_seen():
    r = RecentIds(capacity=10)
    assert [r.seen(x) for x in ["a", "b", "a", "a", "c", "b"]] == [False, False, True, True, False, True]
    assert len(r) == 3


def test_memory_is_bounded_by_two_generations():
    r = RecentIds(capacity=100)
    for i in range(10_000):
        r.seen(f"id{i}")
        assert len(r) <= 200
    assert r.seen("id9999") and r.seen("id9900")


@given(st.lists(st.integers(0, 40).map(str), max_size=300), st.integers(1, 20))
def test_recent_ids_are_always_caught_and_never_invented(ids, capacity):
    r = RecentIds(capacity=capacity)
    recorded: list[str] = []  # ids in the order they were first recorded (not duplicates)
    for x in ids:
        dup = r.seen(x)
        if x in recorded:
            since = len(recorded) - recorded.index(x) - 1  # new ids recorded after x
            if since < capacity:
                assert dup, (x, since)
        else:
            assert not dup  # never a false duplicate
        if not dup:
            if x in recorded:
                recorded.remove(x)
            recorded.append(x)
