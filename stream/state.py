"""Detector state per partition, and its snapshots in Faust tables.

Each assigned partition gets its own stage (and its own policy memory), so a
rebalance moves state with the partition. Hot state lives in plain objects; a
snapshot of the accounts changed since the last one is written to a Faust
table's changelog every few seconds (not per event: every table write is a
changelog message). A worker that takes a partition over reloads each
account lazily from the table the first time it sees it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from detectors.accounts import AccountState
from detectors.config import DetectorConfig
from detectors.pipeline import AccountStage, GroupStage
from detectors.policy import Policy
from stream import metrics
from stream.records import partition_of

log = logging.getLogger(__name__)
META = "\x00meta"
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def pack_account(s: AccountState) -> bytes:
    return _enc.encode([getattr(s, f) for f in AccountState.__slots__])


def unpack_account(raw: bytes) -> AccountState:
    values = _dec.decode(raw)
    s = AccountState.__new__(AccountState)
    for f, v in zip(AccountState.__slots__, values, strict=True):
        setattr(s, f, v)
    return s


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
    """One AccountStage per assigned partition of the by-account topic."""

    def __init__(self, cfg: DetectorConfig, table: Any | None = None):
        self.cfg = cfg
        self.table = table
        self.stages: dict[int, AccountStage] = {}

    def stage(self, partition: int) -> AccountStage:
        st = self.stages.get(partition)
        if st is None:
            st = AccountStage(self.cfg, Policy(self.cfg.policy, self.cfg.version))
            st.accounts.track_dirty = True
            if self.table is not None:
                st.accounts.loader = self._loader()
                meta = self._get((META + str(partition)).encode())
                if meta is not None:
                    start_ts, now = _dec.decode(meta)
                    st.start_ts, st.now = start_ts, now
                    log.info("partition %d: resumed detector time %.3f (watching since %.3f)", partition, now,
                             start_ts)
            self.stages[partition] = st
        return st


    async def snapshot(self, send: Callable[[int, str, bytes | None], None], slice_size: int = 500) -> int:
        """Write every account changed since the last snapshot; returns how many.

        Yields to the event loop every ``slice_size`` writes, so a large snapshot never
        stalls the agents (it would show as decision latency)."""
        n = 0
        for p, st in list(self.stages.items()):
            acc = st.accounts
            dirty, acc.dirty = acc.dirty, set()
            removed, acc.removed = acc.removed, []
            for key in dirty:
                s = acc.states.get(key)
                if s is not None:
                    send(p, key, pack_account(s))
                    n += 1
                    if n % slice_size == 0:
                        await asyncio.sleep(0)
            for key in removed:
                send(p, key, None)  # a tombstone, so the compacted changelog forgets expired accounts
            if st.start_ts is not None:
                send(p, META + str(p), _enc.encode([st.start_ts, st.now]))
        return n

    def _get(self, key: bytes) -> bytes | None:
        try:
            return self.table.data.get(key)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a table that is still recovering answers nothing
            return None

    def _loader(self) -> Callable[[str], AccountState | None]:
        def load(account: str) -> AccountState | None:
            raw = self._get(account.encode())
            if raw is None:
                return None
            metrics.RESTORED.labels("account").inc()
            return unpack_account(raw)

        return load


class GroupPartitions(_Partitions):
    """One GroupStage per assigned partition of the by-group topic; each owns the keys hashed to it."""

    def __init__(self, cfg: DetectorConfig, partitions: int):
        self.cfg = cfg
        self.partitions = partitions
        self.stages: dict[int, GroupStage] = {}

    def stage(self, partition: int) -> GroupStage:
        st = self.stages.get(partition)
        if st is None:
            n = self.partitions
            owns = None if n == 1 else (lambda key, p=partition: partition_of(key, n) == p)
            st = GroupStage(self.cfg, Policy(self.cfg.policy, self.cfg.version), owns=owns)
            self.stages[partition] = st
        return st

