"""Per-network statistics (IPv4 /24, IPv6 /48, ASN) and the fan-out of awakened keys.

Compromised keys look like many old, quiet accounts that wake up together on
one datacenter network, each at about a request a second. No single account is
remarkable; the network is: several awakened, busy accounts at once, where a
corporate NAT has hundreds of people at human pace and a batch job is alone.
The network's request rate, distinct accounts, young share and token ratio are
kept as evidence and for the network's own baseline.
"""

from __future__ import annotations

import ipaddress
import math
import zlib
from functools import lru_cache

from detectors.config import NetworkConfig
from detectors.rates import LN2

_K_MIN = LN2 / 60.0
_K_HOUR = LN2 / 3600.0


@lru_cache(maxsize=65_536)  # twice per request, over a few thousand ASNs
def asn_key(asn: int) -> str:
    """The group key of an ASN: ``AS`` and its number (never a CIDR, so never a network's key)."""
    return f"AS{asn}"


class NetworkKeys:
    """The network of an address in CIDR form, cached.

    >>> k = NetworkKeys()
    >>> k.network_of("203.0.113.7"), k.network_of("2001:db8:42:1::9")
    ('203.0.113.0/24', '2001:db8:42::/48')
    """

    def __init__(self, ipv4_prefix: int = 24, ipv6_prefix: int = 48, cache_size: int = 500_000):
        self.v4 = ipv4_prefix
        self.v6 = ipv6_prefix
        self.cache: dict[str, tuple[str, int, int]] = {}  # read directly on the hot path; cleared, never replaced
        self.cache_size = cache_size

    def network_of(self, ip: str) -> str:
        return self.lookup(ip)[0]

    def lookup(self, ip: str) -> tuple[str, int, int]:
        """The network, a stable 32-bit id of it (the same in every process), and the address's host
        part within it as a number 0-255 (an IPv4 address's last octet; a hash of the rest of an IPv6
        one), which tells the addresses of one network apart.

        >>> k = NetworkKeys()
        >>> k.lookup("203.0.113.7")[::2], k.lookup("::ffff:203.0.113.7")[::2]
        (('203.0.113.0/24', 7), ('203.0.113.0/24', 7))
        """
        hit = self.cache.get(ip)
        if hit is None:
            if ip[:7].lower() == "::ffff:" and "." in ip:  # an IPv4 client seen through a dual-stack socket
                hit = self.cache[ip] = self.lookup(ip[7:])
                return hit
            if ":" not in ip and self.v4 == 24:
                cut = ip.rfind(".")
                net, host = ip[:cut] + ".0/24", int(ip[cut + 1:])
            else:
                prefix = self.v6 if ":" in ip else self.v4
                net = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
                host = int(ip.rsplit(".", 1)[1]) if ":" not in ip else zlib.crc32(ip.encode()) & 0xFF
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            hit = self.cache[ip] = (net, zlib.crc32(net.encode()), host)
        return hit


class NetworkState:
    """Recent activity of one network: decayed rates, awakened accounts, flagged share."""

    __slots__ = ("last_ts", "c_min", "c_flagged", "c_hour", "young_hour", "out_tok", "in_tok", "awakened",
                 "accounts", "young", "flagged_until")

    def __init__(self, ts: float):
        self.last_ts = ts
        self.c_min = self.c_flagged = self.c_hour = self.young_hour = 0.0
        self.out_tok = self.in_tok = 0.0
        # awakened account -> (last seen, the addresses it used here as a 256-bit set, its client)
        self.awakened: dict[str, tuple[float, int, int]] = {}
        self.accounts: dict[str, float] = {}
        self.young: dict[str, float] = {}
        self.flagged_until = 0.0

    def pack(self) -> list:
        """The network as plain values, for a snapshot.

        >>> s = NetworkState(3.0)
        >>> s.awakened, s.accounts = {"a": (3.0, 6, 1), "b": (3.0, 1 << 255, 2)}, {"a": 3.0}
        >>> t = NetworkState.unpack(s.pack())
        >>> t.awakened == s.awakened, t.accounts, t.last_ts
        (True, {'a': 3.0}, 3.0)
        """
        return [self.last_ts, self.c_min, self.c_flagged, self.c_hour, self.young_hour, self.out_tok, self.in_tok,
                # the address set as bytes: a 256-bit int fits no snapshot encoding's integers
                [[a, t, bits.to_bytes(32, "little"), client] for a, (t, bits, client) in self.awakened.items()],
                self.accounts, self.young, self.flagged_until]

    @classmethod
    def unpack(cls, raw: list) -> NetworkState:
        s = cls(raw[0])
        (s.c_min, s.c_flagged, s.c_hour, s.young_hour, s.out_tok, s.in_tok, awakened, s.accounts, s.young,
         s.flagged_until) = raw[1:]
        s.awakened = {a: (t, int.from_bytes(bits, "little"), client) for a, t, bits, client in awakened}
        return s

    def awakened_count(self, now: float, window_s: float) -> int:
        horizon = now - window_s
        stale = [a for a, w in self.awakened.items() if w[0] < horizon]
        for a in stale:
            del self.awakened[a]
        return len(self.awakened)

    def coordination(self) -> tuple[float, float]:
        """How alike the awakened accounts here act: (the share of them using addresses another one uses
        too: two of theirs, or their one; the share of the commonest client among them).

        One operator driving stolen keys runs them all through the same few servers with one tool; the
        CI runners of many customers each lease their own runner and bring their own client.

        >>> s = NetworkState(0.0)
        >>> s.awakened = {"a": (0.0, 0b0110, 1), "b": (0.0, 0b0111, 1), "c": (0.0, 0b1000, 2)}
        >>> s.coordination()
        (0.667, 0.667)
        """
        ws = list(self.awakened.values())[-64:]
        n = len(ws)
        if n < 2:
            return 0.0, 0.0
        sharing = 0
        for i, (_, bits, _) in enumerate(ws):
            need = 2 if bits & (bits - 1) else 1
            if any((bits & other).bit_count() >= need for j, (_, other, _) in enumerate(ws) if j != i):
                sharing += 1
        clients: dict[int, int] = {}
        for _, _, client in ws:
            clients[client] = clients.get(client, 0) + 1
        return round(sharing / n, 3), round(max(clients.values()) / n, 3)

    def established(self, now: float, window_s: float) -> int:
        """Old accounts active here within the window that did not wake up: ordinary customers of the
        network (a heavy customer, an app back-end), whom a block of the network would hit."""
        horizon = now - window_s
        awakened, young = self.awakened, self.young
        return sum(1 for a, t in self.accounts.items() if t >= horizon and a not in awakened and a not in young)

    def flagged_share(self) -> float:
        return self.c_flagged / self.c_min if self.c_min > 0 else 0.0

    def evidence(self, now: float, window_s: float) -> dict[str, float]:
        horizon = now - window_s
        return {
            "network_rps": round(self.c_min * _K_MIN, 3),
            "network_accounts": sum(1 for t in self.accounts.values() if t >= horizon),
            "network_awakened_accounts": len(self.awakened),
            "network_flagged_share": round(self.flagged_share(), 3),
            "network_young_share": round(self.young_hour / self.c_hour, 3) if self.c_hour else 0.0,
            "network_token_ratio": round(self.out_tok / (self.in_tok + 50.0), 3),
        }


class NetworkTracker:
    """All network states with idle expiry and a cap.

    >>> from detectors.config import NetworkConfig
    >>> t = NetworkTracker(NetworkConfig())
    >>> s = t.observe("198.51.100.0/24", "a", ts=0.0, young=False, flagged=False, out_tok=0, in_tok=0)
    >>> t.mark_awakened(s, "a", 0.0), t.mark_awakened(s, "b", 1.0)
    (1, 2)
    """

    def __init__(self, cfg: NetworkConfig, max_accounts_per_network: int = 256):
        self.cfg = cfg
        self.networks: dict[str, NetworkState] = {}
        self.max_accounts_per_network = max_accounts_per_network
        self.evicted = 0
        # For a snapshot log: networks changed, and networks gone, since it last looked.
        self.track_dirty = False
        self.dirty: set[str] = set()
        self.removed: list[str] = []

    def __len__(self) -> int:
        return len(self.networks)

    def observe(self, net: str, account: str, ts: float, young: bool, flagged: bool, out_tok: int,
                in_tok: int) -> NetworkState:
        s = self.networks.get(net)
        if s is None:
            if len(self.networks) >= self.cfg.max_networks:
                self._evict()
            s = self.networks[net] = NetworkState(ts)
        if self.track_dirty:
            self.dirty.add(net)
        # NetworkState.update, inlined: this runs twice per request (network and ASN).
        dt = ts - s.last_ts
        if dt > 0.0:
            f_min = math.exp(-dt * _K_MIN)
            f_hour = math.exp(-dt * _K_HOUR)
            s.c_min = s.c_min * f_min + 1.0
            s.c_flagged *= f_min
            s.c_hour = s.c_hour * f_hour + 1.0
            s.young_hour *= f_hour
            s.out_tok = s.out_tok * f_hour + out_tok
            s.in_tok = s.in_tok * f_hour + in_tok
            s.last_ts = ts
            w_min = w_hour = 1.0
        else:
            # Late (observations from several account partitions arrive out of step): it weighs what it
            # would weigh now, had it come in time, as in AccountState.update.
            w_min = math.exp(dt * _K_MIN)
            w_hour = math.exp(dt * _K_HOUR)
            s.c_min += w_min
            s.c_hour += w_hour
            s.out_tok += out_tok * w_hour
            s.in_tok += in_tok * w_hour
        if flagged:
            s.c_flagged += w_min
        cap = self.max_accounts_per_network
        if young:
            s.young_hour += w_hour
            if account in s.young or len(s.young) < cap:
                s.young[account] = ts
        accounts = s.accounts
        if account in accounts or len(accounts) < cap:
            accounts[account] = ts
        return s

    def mark_awakened(self, s: NetworkState, account: str, ts: float, address: int = 0, client: int = 0) -> int:
        """Record an awakened busy account on this network, with the address it came from and its client;
        returns how many are within the window."""
        w = s.awakened.get(account)
        if w is not None:
            s.awakened[account] = (max(ts, w[0]), w[1] | 1 << address, client)
        elif len(s.awakened) < self.max_accounts_per_network:
            s.awakened[account] = (ts, 1 << address, client)
        return s.awakened_count(ts, self.cfg.window_s)

    def expire(self, now: float) -> int:
        horizon = now - 2 * 3600.0
        stale = [k for k, s in self.networks.items() if s.last_ts < horizon and s.flagged_until < now]
        for k in stale:
            del self.networks[k]
        if self.track_dirty:
            self.removed.extend(stale)
        for k, s in self.networks.items():
            if self.track_dirty and (len(s.accounts) > 16 or len(s.young) > 16):
                self.dirty.add(k)  # its lists are trimmed
            if len(s.accounts) > 16:
                cutoff = now - self.cfg.window_s
                s.accounts = {a: t for a, t in s.accounts.items() if t >= cutoff}
            if len(s.young) > 16:
                cutoff = now - self.cfg.window_s
                s.young = {a: t for a, t in s.young.items() if t >= cutoff}
        return len(stale)

    def _evict(self) -> None:
        n = max(1, len(self.networks) // 10)
        gone = list(self.networks)[:n]
        for k in gone:
            del self.networks[k]
        if self.track_dirty:
            self.removed.extend(gone)
        self.evicted += n
