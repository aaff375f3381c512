"""Clusters of accounts acting alike, and what their members are like, in bounded memory.

An account joins a cluster through a key it shares with others: a band of its prompt SimHash (LSH:
prompts within a few bits share a band), its client with its sign-up window, or its payment
fingerprint. A cluster remembers its most recent members (up to a cap, within a window of hours) and,
for each, the traits the account stage measured: its card, exit network, client, sign-up window and
prompt, whether it harvests long answers, hops between exits, runs at machine-regular pace, is young,
or was already found acting in a campaign. From those it keeps running counts of how much the members
share. That composition is what the campaign rules weigh: no trait alone makes a campaign, and every
one has honest holders.

A key seen from one account only costs a slot in a fixed table, never a cluster: most prompts are
nobody else's.
"""

from __future__ import annotations

import zlib
from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config builds its sections from the rules, which read clusters
    from detectors.config import ClusterConfig

HARVEST, YOUNG, ROTATING, AUTOMATED, CAMPAIGN, REPEAT, SEASONED = 1, 2, 4, 8, 16, 32, 64  # flag i is bit i
# REPEAT: the account has made more than one request, so whether it hops exits shows; SEASONED: enough
# requests for its timing to show. A trait that cannot show yet is no evidence either way.
FLAGS = (HARVEST, YOUNG, ROTATING, AUTOMATED, CAMPAIGN, REPEAT, SEASONED)


def prompt_bands(prompt_fp: str, bands: int) -> list[str]:
    """LSH band keys of a 64-bit SimHash in hex: ``bands`` slices of ``64 // bands`` bits (the last takes
    the rest). Near prompts share at least one: prompts within ``bands - 1`` differing bits always do.
    Wider slices make two unrelated prompts meet by chance less often (one in 2**21 per slice at three
    bands, where sixteen bits, at four, saturate with a few hundred thousand prompts an hour).

    >>> a = prompt_bands("0123456789abcdef", 4)
    >>> b = prompt_bands("0123456789abcdee", 4)   # one bit apart
    >>> a
    ['f0:0123', 'f1:4567', 'f2:89ab', 'f3:cdef']
    >>> len(set(a) & set(b))
    3
    >>> prompt_bands("0123456789abcdef", 3)
    ['f0:002468', 'f1:159e26', 'f2:2bcdef']
    """
    x = int(prompt_fp, 16)
    width = 64 // bands
    out = []
    for i in range(bands):
        lo = i * width
        bits = 64 - lo if i == bands - 1 else width
        v = (x >> (64 - lo - bits)) & ((1 << bits) - 1)
        out.append(f"f{i}:{v:0{(bits + 3) // 4}x}")
    return out


_BANDS: dict[tuple[str, int], list[str]] = {}
_BANDS_CAP = 65_536


def cluster_keys(
    prompt_fp: str | None, payment_fp: str | None, user_agent: str | None, created: float | None,
    cfg: ClusterConfig,
) -> list[str]:
    """Every cluster key one request belongs to, in visiting order: prompt bands, client with sign-up
    window, then the card (last, so its stage knows what the account's other clusters found).

    >>> from detectors.config import ClusterConfig
    >>> cluster_keys(None, "pay_1", "sdk/1", 3600.0, ClusterConfig())
    ['signup:sdk/1|0', 'pay:pay_1']
    """
    if prompt_fp:
        # A campaign repeats its prompts: their bands are remembered (a bounded memo).
        bands = _BANDS.get((prompt_fp, cfg.prompt_bands))
        if bands is None:
            if len(_BANDS) >= _BANDS_CAP:
                _BANDS.clear()
            bands = _BANDS[(prompt_fp, cfg.prompt_bands)] = prompt_bands(prompt_fp, cfg.prompt_bands)
        keys = list(bands)
    else:
        keys = []
    if user_agent and created is not None:
        keys.append(f"signup:{user_agent}|{int(created // cfg.signup_bucket_s)}")
    if payment_fp:
        keys.append("pay:" + payment_fp)
    return keys


_TRAITS: dict[str, int] = {}


def trait(value: str | None) -> int:
    """A small stable number for a card, client or prompt (0: not known); remembered, as they repeat."""
    if not value:
        return 0
    t = _TRAITS.get(value)
    if t is None:
        if len(_TRAITS) >= 65_536:
            _TRAITS.clear()
        t = _TRAITS[value] = zlib.crc32(value.encode()) | 1
    return t


class Member:
    """One member of a cluster as of its latest request there."""

    __slots__ = ("last_ts", "net", "card", "client", "cohort", "prompt", "flags", "hits")

    def __init__(self, last_ts: float, net: int, card: int, client: int, cohort: int, prompt: int, flags: int):
        self.last_ts = last_ts
        self.net, self.card, self.client, self.cohort, self.prompt = net, card, client, cohort, prompt
        self.flags = flags
        self.hits = 1


class _Tally(dict[int, int]):
    """How many members hold each value of one trait, and how many members share theirs with another."""

    __slots__ = ("shared",)

    def __init__(self) -> None:
        super().__init__()
        self.shared = 0  # members whose value at least one other member holds too

    def add(self, v: int) -> None:
        c = self.get(v, 0)
        self[v] = c + 1
        if c:
            self.shared += 2 if c == 1 else 1

    def remove(self, v: int) -> None:
        c = self[v]
        if c == 1:
            del self[v]
        else:
            self[v] = c - 1
            self.shared -= 2 if c == 2 else 1

    def top(self) -> int:
        return max(self.values()) if self else 0


class ClusterState:
    """The recent members of one cluster and the running counts of what they share.

    Members are kept in the order they were last seen, so the oldest is first and leaves first; every
    count is kept up to date as members come, come back and leave, so an observation costs the same
    whatever the cluster's size.
    """

    __slots__ = ("members", "nets", "cards", "clients", "cohorts", "prompts", "flag_counts", "gap_s", "first_ts",
                 "last_ts", "version", "memo")

    def __init__(self, ts: float) -> None:
        self.members: dict[str, Member] = {}
        self.nets, self.cards, self.clients = _Tally(), _Tally(), _Tally()
        self.cohorts, self.prompts = _Tally(), _Tally()
        self.flag_counts = [0] * len(FLAGS)
        self.gap_s = 0.0  # members' typical time between two of their requests here (EW mean)
        self.first_ts = self.last_ts = ts
        self.version = 0  # moves whenever a count does: what was judged of the counts holds until it moves
        self.memo: object = None  # (version, what a rule judged of it), for that rule

    def __len__(self) -> int:
        return len(self.members)

    def count(self, flag: int) -> int:
        """Members carrying ``flag`` (``HARVEST``, ``YOUNG``, ...)."""
        return self.flag_counts[flag.bit_length() - 1]

    def _add(self, m: Member) -> None:
        self.nets.add(m.net)
        self._traits(m, 1)

    def _remove(self, m: Member) -> None:
        self.nets.remove(m.net)
        self._traits(m, -1)

    def _traits(self, m: Member, sign: int) -> None:
        self.version += 1
        if sign > 0:
            if m.card:
                self.cards.add(m.card)
            if m.client:
                self.clients.add(m.client)
            if m.cohort:
                self.cohorts.add(m.cohort)
            if m.prompt:
                self.prompts.add(m.prompt)
        else:
            if m.card:
                self.cards.remove(m.card)
            if m.client:
                self.clients.remove(m.client)
            if m.cohort:
                self.cohorts.remove(m.cohort)
            if m.prompt:
                self.prompts.remove(m.prompt)
        f = m.flags
        counts = self.flag_counts
        while f:
            low = f & -f
            counts[low.bit_length() - 1] += sign
            f ^= low

    def pack(self) -> list:
        """The cluster as plain values, for a snapshot; its counts follow from its members.

        >>> c = ClusterState(1.0)
        >>> for a in "ab":
        ...     c.members[a] = Member(1.0, net=3, card=5, client=0, cohort=0, prompt=0, flags=HARVEST)
        ...     c._add(c.members[a])
        >>> d = ClusterState.unpack(c.pack())
        >>> (list(d.members), d.cards.shared, d.count(HARVEST), d.version == c.version)
        (['a', 'b'], 2, 2, True)
        """
        ms = [[a, m.last_ts, m.net, m.card, m.client, m.cohort, m.prompt, m.flags, m.hits]
              for a, m in self.members.items()]
        return [ms, self.gap_s, self.first_ts, self.last_ts, self.version]

    @classmethod
    def unpack(cls, raw: list) -> ClusterState:
        ms, gap_s, first_ts, last_ts, version = raw
        c = cls(first_ts)
        for a, last, net, card, client, cohort, prompt, flags, hits in ms:
            m = c.members[a] = Member(last, net, card, client, cohort, prompt, flags)
            m.hits = hits
            c._add(m)
        c.gap_s, c.last_ts, c.version = gap_s, last_ts, version  # the rules' memo, keyed by version, starts empty
        return c

    def evidence(self) -> dict[str, float | int]:
        n = len(self.members) or 1
        return {"cluster_accounts": len(self.members), "cluster_networks": len(self.nets),
                "cluster_cards_shared": round(self.cards.shared / n, 3),
                "cluster_harvest_share": round(self.count(HARVEST) / n, 3),
                "cluster_young_share": round(self.count(YOUNG) / n, 3)}


class ClusterTracker:
    """All clusters by key, with a window, a member cap, a cluster cap and the table of keys seen once.

    >>> from detectors.config import ClusterConfig
    >>> t = ClusterTracker(ClusterConfig())
    >>> t.observe("pay:x", "a", 0.0, net=1, card=5, client=0, cohort=0, prompt=0, flags=HARVEST) is None
    True
    >>> c = t.observe("pay:x", "b", 1.0, net=2, card=5, client=0, cohort=0, prompt=0, flags=HARVEST)
    >>> len(c), c.cards.shared, c.count(HARVEST)    # a second account made it a cluster
    (1, 0, 1)
    >>> c = t.observe("pay:x", "a", 2.0, net=3, card=5, client=0, cohort=0, prompt=0, flags=0)
    >>> len(c), c.cards.shared, c.count(HARVEST)
    (2, 2, 1)
    """

    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg
        self.clusters: dict[str, ClusterState] = {}
        self.evicted = 0
        self._seen = array("Q", bytes(8 * cfg.seen_once_slots))  # key hash << 32 | account hash
        self._mask = cfg.seen_once_slots - 1
        # For a snapshot log: keys whose cluster changed, and keys whose cluster is gone, since it last looked.
        self.track_dirty = False
        self.dirty: set[str] = set()
        self.removed: list[str] = []
        self.seen_writes = 0  # how often the table of keys seen once was written: unchanged, it is not compared

    @property
    def seen(self) -> array:
        """The table of keys seen from one account only (a snapshot copies it)."""
        return self._seen

    def __len__(self) -> int:
        return len(self.clusters)

    def observe(self, key: str, account: str, ts: float, net: int, card: int, client: int, cohort: int,
                prompt: int, flags: int) -> ClusterState | None:
        """One request of ``account`` on the cluster ``key``; the cluster, or None while the key has been
        seen from this account only."""
        c = self.clusters.get(key)
        if c is None:
            kh = zlib.crc32(key.encode())
            ah = zlib.crc32(account.encode())
            slot = kh & self._mask
            prev = self._seen[slot]
            if prev >> 32 != kh or prev & 0xFFFFFFFF == ah:
                self._seen[slot] = kh << 32 | ah
                self.seen_writes += 1
                return None
            if len(self.clusters) >= self.cfg.max_clusters:
                self._evict()
            c = self.clusters[key] = ClusterState(ts)
        if self.track_dirty:
            self.dirty.add(key)
        members = c.members
        m = members.pop(account, None)
        if m is not None:
            gap = ts - m.last_ts
            if gap > 1.0:
                c.gap_s = gap if c.gap_s == 0.0 else 0.8 * c.gap_s + 0.2 * gap
            flags |= m.flags & CAMPAIGN
            if (m.net, m.card, m.client, m.cohort, m.prompt, m.flags) != (net, card, client, cohort, prompt, flags):
                c._remove(m)
                m.net, m.card, m.client, m.cohort, m.prompt, m.flags = net, card, client, cohort, prompt, flags
                c._add(m)
            if ts > m.last_ts:
                m.last_ts = ts
            m.hits += 1
            members[account] = m  # to the end: the order is last seen
        else:
            if len(members) >= self.cfg.max_members_tracked:
                c._remove(members.pop(next(iter(members))))
            m = members[account] = Member(ts, net, card, client, cohort, prompt, flags)
            c._add(m)
        if ts > c.last_ts:
            c.last_ts = ts
        horizon = ts - self.cfg.window_s
        while True:
            first = next(iter(members))
            old = members[first]
            if old.last_ts >= horizon:
                break
            del members[first]
            c._remove(old)
        return c

    def mark_campaign(self, c: ClusterState, account: str) -> None:
        """Remember that this member was found acting in a campaign (by any of its clusters)."""
        m = c.members.get(account)
        if m is not None and not m.flags & CAMPAIGN:
            c._traits(m, -1)
            m.flags |= CAMPAIGN
            c._traits(m, 1)

    def expire(self, now: float) -> int:
        horizon = now - self.cfg.window_s
        stale = [k for k, c in self.clusters.items() if c.last_ts < horizon]
        for k in stale:
            del self.clusters[k]
        if self.track_dirty:
            self.removed.extend(stale)
        return len(stale)

    def _evict(self) -> None:
        n = max(1, len(self.clusters) // 10)
        gone = list(self.clusters)[:n]
        for k in gone:
            del self.clusters[k]
        if self.track_dirty:
            self.removed.extend(gone)
        self.evicted += n
