"""A generated scenario: its actors' labels, and their event streams merged into one in ts order."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Protocol

from .accounts import Account

_FP_FIELDS = ("prompt_fp", "payment_fp")


class Actor(Protocol):
    """Anything that owns accounts and can replay their requests as ts-ordered streams."""

    accounts: list[Account]

    def streams(self) -> list[Iterator[dict]]: ...


class Simulation:
    """One scenario: labels known up front, and events streamed with bounded memory.

    Each call to `events()` starts fresh generators, so it can be iterated
    several times and gives the same events each time. Labels list every account
    the actors planned (a superset, by a handful at most, of the accounts that
    send a request inside the window: a person whose last session ends just
    before t0).
    """

    def __init__(
        self,
        name: str,
        tag: str,
        t0: float,
        duration: float,
        actors: Sequence[Actor],
        *,
        strip_fingerprints: bool = False,
    ) -> None:
        self.name, self.tag, self.t0, self.duration = name, tag, t0, duration
        self.actors = list(actors)
        self.strip_fingerprints = strip_fingerprints

    def accounts(self) -> Iterator[Account]:
        for a in self.actors:
            yield from a.accounts

    def labels(self) -> dict:
        """Ground truth in the scorer's labels format."""
        return {
            "variant": self.name,
            "t0": self.t0,
            "duration": self.duration,
            "accounts": {a.id: a.label_entry() for a in self.accounts()},
        }

    def events(self) -> Iterator[dict]:
        """Every request event of the scenario in ts order, with unique event ids."""
        streams = [s for a in self.actors for s in a.streams()]
        prefix = f"e{self.tag}-"
        strip = self.strip_fingerprints
        for n, ev in enumerate(heapq.merge(*streams, key=itemgetter("ts"))):
            ev["event_id"] = f"{prefix}{n:09d}"
            if strip:
                for k in _FP_FIELDS:
                    ev.pop(k, None)
            yield ev

    def __iter__(self) -> Iterator[dict]:
        return self.events()
