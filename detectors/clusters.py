"""Clusters of young accounts acting alike, tracked with bounded memory.

An account joins a cluster through a key it shares with others: its payment
fingerprint, a band of its prompt SimHash (LSH: prompts within a few bits share
at least one 16-bit band exactly), or its client together with its sign-up
time. A cluster is a campaign when enough young accounts from enough distinct
networks joined it within a window and most of them harvest long answers; a
fresh account that joins a known campaign is then caught on its first request.
A hackathon (many new accounts, one address, same tutorial) fails the network
spread test; honest people sharing a card are few and not young together.
"""

from __future__ import annotations

from detectors.config import ClusterConfig


def prompt_bands(prompt_fp: str, bands: int) -> list[str]:
    """LSH band keys of a 64-bit SimHash in hex: near prompts share at least one.

    Prompts within ``bands - 1`` differing bits always share a band.

    >>> a = prompt_bands("0123456789abcdef", 4)
    >>> b = prompt_bands("0123456789abcdee", 4)   # one bit apart
    >>> a
    ['f0:0123', 'f1:4567', 'f2:89ab', 'f3:cdef']
    >>> len(set(a) & set(b))
    3
    """
    width = 16 // bands
    fp = prompt_fp.lower()
    out = []
    for i in range(bands):
        lo = i * width
        hi = 16 if i == bands - 1 else lo + width
        out.append(f"f{i}:{fp[lo:hi]}")
    return out


_BANDS: dict[tuple[str, int], list[str]] = {}
_BANDS_CAP = 65_536


def cluster_keys(
    prompt_fp: str | None, payment_fp: str | None, user_agent: str | None, created: float | None,
    cfg: ClusterConfig,
) -> list[str]:
    """Every cluster key one young account's request belongs to.

    >>> from detectors.config import ClusterConfig
    >>> cluster_keys(None, "pay_1", "sdk/1", 3600.0, ClusterConfig())
    ['pay:pay_1', 'signup:sdk/1|0']
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
    if payment_fp:
        keys.append("pay:" + payment_fp)
    if user_agent and created is not None:
        keys.append(f"signup:{user_agent}|{int(created // cfg.signup_bucket_s)}")
    return keys


class ClusterState:
    """Recent young members of one cluster: last seen, network, and whether they harvest.

    Members are kept in the order they were last seen, with running counts per network and of
    harvesters, so an observation costs the same whatever the cluster's size: the oldest member
    is the first one, and members leave from the front as they fall out of the window.
    """

    __slots__ = ("members", "per_net", "harvesters", "flagged", "members_n", "networks_n", "harvest_share")

    def __init__(self) -> None:
        self.members: dict[str, tuple[float, int, bool]] = {}
        self.per_net: dict[int, int] = {}
        self.harvesters = 0
        self.flagged = False
        self.members_n = 0
        self.networks_n = 0
        self.harvest_share = 0.0

    def _leave(self, m: tuple[float, int, bool]) -> None:
        per_net = self.per_net
        k = per_net[m[1]] - 1
        if k:
            per_net[m[1]] = k
        else:
            del per_net[m[1]]
        if m[2]:
            self.harvesters -= 1

    def evidence(self) -> dict[str, float | str]:
        return {"cluster_accounts": self.members_n, "cluster_networks": self.networks_n,
                "cluster_harvest_share": round(self.harvest_share, 3)}


class ClusterTracker:
    """All clusters keyed by cluster key, re-evaluated on every observation in constant time.

    >>> from detectors.config import ClusterConfig
    >>> t = ClusterTracker(ClusterConfig(min_accounts=3, min_networks=3))
    >>> flags = [t.observe("pay:x", f"a{i}", ts=float(i), net=i, harvest=True).flagged for i in range(4)]
    >>> flags
    [False, False, True, True]
    """

    def __init__(self, cfg: ClusterConfig):
        self.cfg = cfg
        self.clusters: dict[str, ClusterState] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.clusters)

    def observe(self, key: str, account: str, ts: float, net: int, harvest: bool) -> ClusterState:
        c = self.clusters.get(key)
        if c is None:
            if len(self.clusters) >= self.cfg.max_clusters:
                self._evict()
            c = self.clusters[key] = ClusterState()
        members = c.members
        m = members.pop(account, None)
        if m is not None:
            c._leave(m)
        elif len(members) >= self.cfg.max_members_tracked:
            c._leave(members.pop(next(iter(members))))
        members[account] = (ts, net, harvest)  # to the end: the order is last seen
        c.per_net[net] = c.per_net.get(net, 0) + 1
        if harvest:
            c.harvesters += 1
        horizon = ts - self.cfg.window_s
        while True:
            first = next(iter(members))
            m = members[first]
            if m[0] >= horizon:
                break
            del members[first]
            c._leave(m)
        n = c.members_n = len(members)
        c.networks_n = len(c.per_net)
        c.harvest_share = c.harvesters / n
        c.flagged = (n >= self.cfg.min_accounts and c.networks_n >= self.cfg.min_networks
                     and max(c.per_net.values()) / n <= self.cfg.max_network_share)
        return c

    def expire(self, now: float) -> int:
        horizon = now - self.cfg.window_s
        # The last member is the one seen most recently.
        stale = [k for k, c in self.clusters.items() if next(reversed(c.members.values()))[0] < horizon]
        for k in stale:
            del self.clusters[k]
        return len(stale)

    def _evict(self) -> None:
        n = max(1, len(self.clusters) // 10)
        for k in list(self.clusters)[:n]:
            del self.clusters[k]
        self.evicted += n
