"""Duplicate deliveries: an event id seen recently is counted once, in bounded memory."""

from __future__ import annotations


class RecentIds:
    """Remembers the last ``capacity`` to ``2 * capacity`` ids in two rotating generations.

    >>> r = RecentIds(capacity=2)
    >>> [r.seen(x) for x in ["a", "b", "a", "c", "d", "e", "a"]]
    [False, False, True, False, False, False, False]
    """

    __slots__ = ("capacity", "current", "previous")

    def __init__(self, capacity: int = 500_000):
        self.capacity = capacity
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def seen(self, event_id: str) -> bool:
        """True if the id was seen before (a duplicate); records it otherwise."""
        if event_id in self.current or event_id in self.previous:
            return True
        if len(self.current) >= self.capacity:
            self.previous = self.current
            self.current = set()
        self.current.add(event_id)
        return False

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)
