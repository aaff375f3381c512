"""What the account stage hands to the group stages about one valid event."""

from __future__ import annotations

import msgspec


class Observation(msgspec.Struct, array_like=True, gc=False):
    """One valid event as the group stages need it: who, where, and the account's features."""

    ts: float
    account: str
    net: str
    net_id: int
    asn: int | None
    young: bool
    harvest: bool
    awakened_rps: float  # the 10 s rate of an account that just woke up, else 0
    out_tok: int
    in_tok: int
    created: float | None
    user_agent: str | None
    prompt_fp: str | None
    payment_fp: str | None
    harvest_ratio: float
    networks_used: int  # distinct networks its requests came from (a proxy's exits: many)
