"""Accounts and the events they send: the account record, unique ids, and the event dict builder."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Account:
    """One API account and its ground truth (label, group, attack onset).

    >>> a = Account("acct_1", 1.0e9, label="attack", group="hydra", onset=1.1e9)
    >>> a.label_entry()
    {'label': 'attack', 'group': 'hydra', 'onset': 1100000000.0, 'created': 1000000000.0}
    """

    id: str
    created: float
    label: str = "benign"
    group: str | None = None
    onset: float | None = None
    payment_fp: str | None = None

    def label_entry(self) -> dict:
        return {"label": self.label, "group": self.group, "onset": self.onset, "created": self.created}


class AccountIds:
    """Source of unique, unguessable-looking account ids (no serial numbers a detector could key on).

    >>> ids = AccountIds(random.Random(1))
    >>> a, b = ids.new(), ids.new()
    >>> a != b, a.startswith("acct_"), len(a)
    (True, True, 21)
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen: set[str] = set()

    def new(self) -> str:
        while True:
            i = f"acct_{self._rng.getrandbits(64):016x}"
            if i not in self._seen:
                self._seen.add(i)
                return i


def make_event(
    acct: Account,
    ts: float,
    ip: str,
    asn: int,
    ua: str,
    model: str,
    inp: int,
    out: int,
    prompt_fp: str,
    endpoint: str = "/v1/messages",
) -> dict:
    """One request event in the contract's form; event_id is filled in when streams are merged."""
    ev = {
        "event_id": "",
        "ts": round(ts, 3),
        "account_id": acct.id,
        "ip": ip,
        "asn": asn,
        "user_agent": ua,
        "endpoint": endpoint,
        "model": model,
        "input_tokens": inp,
        "output_tokens": out,
        "status": 200,
        "account_created_ts": acct.created,
        "prompt_fp": prompt_fp,
    }
    if acct.payment_fp is not None:
        ev["payment_fp"] = acct.payment_fp
    return ev
