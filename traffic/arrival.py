"""The order a worker reads events in, as opposed to the order they happened in.

Gateways that batch may spread their JSON arrays over the ``requests`` partitions
round-robin (the contract allows any key), and a worker fetches several messages of
one partition at a time, partition after partition. During a catch-up each fetch
spans minutes of event time, so one account's requests reach the detector minutes
out of order. Replaying a file in this order shows what the live worker decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def out_of_step(items: Sequence[T], partitions: int = 4, per_message: int = 1000, per_fetch: int = 6) -> list[T]:
    """``items`` (in event-time order) as a worker reads them: arrays of ``per_message`` spread round-robin
    over ``partitions``, read ``per_fetch`` arrays of one partition at a time.

    >>> out_of_step(list(range(12)), partitions=2, per_message=2, per_fetch=2)
    [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 10, 11]
    """
    if partitions < 1 or per_message < 1 or per_fetch < 1:
        raise ValueError("partitions, per_message and per_fetch must be at least 1")
    parts: list[list[Sequence[T]]] = [[] for _ in range(partitions)]
    for n, i in enumerate(range(0, len(items), per_message)):
        parts[n % partitions].append(items[i:i + per_message])
    out: list[T] = []
    for f in range(0, max(len(p) for p in parts), per_fetch):
        for p in parts:
            for message in p[f:f + per_fetch]:
                out.extend(message)
    return out
