"""What the account stage hands to the group stages about one valid event."""

from __future__ import annotations

import msgspec


class Observation(msgspec.Struct, array_like=True, gc=False):
    """One valid event as the group stages need it: who, where, and the account's traits so far.

    The traits are the account's own (its history in the account stage), so a group stage can weigh
    each member of a network or a cluster without holding per-account state of its own."""

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
    requests: int = 1  # the account's requests so far, this one included
    rotating: bool = False  # it hops between networks: most requests from another than the last
    automated: bool = False  # machine-regular timing over enough requests
    address: int = 0  # the host part of its address within the network (IPv4: last octet)
    gap_s: float = 0.0  # its typical time between two requests (0 before its second)
