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


def cluster_keys(
    prompt_fp: str | None, payment_fp: str | None, user_agent: str | None, created: float | None,
    cfg: ClusterConfig,
) -> list[str]:
    """Every cluster key one young account's request belongs to.

    >>> from detectors.config import ClusterConfig
    >>> cluster_keys(None, "pay_1", "sdk/1", 3600.0, ClusterConfig())
    ['pay:pay_1', 'signup:sdk/1|0']
    """
    keys = prompt_bands(prompt_fp, cfg.prompt_bands) if prompt_fp else []
    if payment_fp:
        keys.append("pay:" + payment_fp)
    if user_agent and created is not None:
        keys.append(f"signup:{user_agent}|{int(created // cfg.signup_bucket_s)}")
    return keys


class ClusterState:
    """Recent young members of one cluster: last seen, network, and whether they harvest."""

    __slots__ = ("members", "flagged", "members_n", "networks_n", "harvest_share", "checked_ts", "dirty")

    def __init__(self) -> None:
        self.members: dict[str, tuple[float, int, bool]] = {}
        self.flagged = False
        self.members_n = 0
        self.networks_n = 0
        self.harvest_share = 0.0
        self.checked_ts = 0.0
        self.dirty = False

    def evidence(self) -> dict[str, float | str]:
        return {"cluster_accounts": self.members_n, "cluster_networks": self.networks_n,
                "cluster_harvest_share": round(self.harvest_share, 3)}


class ClusterTracker:
    """All clusters keyed by cluster key, re-evaluated when membership changes.

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
        m = c.members.get(account)
        if m is None or m[2] != harvest or m[1] != net:
            c.dirty = True
        if m is None and len(c.members) >= self.cfg.max_members_tracked:
            oldest = min(c.members, key=lambda a: c.members[a][0])
            del c.members[oldest]
        c.members[account] = (ts, net, harvest)
        if c.dirty or ts - c.checked_ts > 30.0:
            self._evaluate(c, ts)
        return c

    def _evaluate(self, c: ClusterState, now: float) -> None:
        horizon = now - self.cfg.window_s
        live = [v for v in c.members.values() if v[0] >= horizon]
        if len(live) < len(c.members):
            c.members = {a: v for a, v in c.members.items() if v[0] >= horizon}
        c.members_n = len(live)
        per_net: dict[int, int] = {}
        for v in live:
            per_net[v[1]] = per_net.get(v[1], 0) + 1
        c.networks_n = len(per_net)
        top_share = max(per_net.values()) / len(live) if live else 1.0
        c.harvest_share = sum(1 for v in live if v[2]) / len(live) if live else 0.0
        c.flagged = (c.members_n >= self.cfg.min_accounts and c.networks_n >= self.cfg.min_networks
                     and top_share <= self.cfg.max_network_share)
        c.checked_ts = now
        c.dirty = False

    def expire(self, now: float) -> int:
        horizon = now - self.cfg.window_s
        stale = [k for k, c in self.clusters.items() if all(v[0] < horizon for v in c.members.values())]
        for k in stale:
            del self.clusters[k]
        return len(stale)

    def _evict(self) -> None:
        n = max(1, len(self.clusters) // 10)
        for k in list(self.clusters)[:n]:
            del self.clusters[k]
        self.evicted += n
