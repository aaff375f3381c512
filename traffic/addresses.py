"""Where simulated requests come from: ASNs, their address blocks, customer networks and proxy exits.

Addresses are public-looking numbers drawn from a seed (the events are data only;
nothing ever connects to them). Each ASN owns a few IPv4 /16 blocks and an IPv6
/32, and hands out /24s and /48s inside them, so networks of one ISP cluster the
way they do on the real Internet.
"""

from __future__ import annotations

import ipaddress
import random

RESIDENTIAL_ASNS = (7922, 3320, 4134, 9808, 12389, 2856, 4837, 7018, 5089, 3352, 6830, 20115)
CLOUD_ASNS = (16509, 8075, 14061, 16276, 63949, 396982)
BUSINESS_ASNS = (3356, 174, 1299, 6939, 2914)
UNIVERSITY_ASNS = (2200, 680, 786, 11537, 1103, 2152)
# mobile carriers put thousands of subscribers behind each carrier-grade NAT address
MOBILE_ASNS = (21928, 6167, 20057, 45609, 26599, 12430)
# hosting networks commercial VPN services rent their servers in
VPN_ASNS = (9009, 60068, 212238, 136787, 147049, 51852)


class Net:
    """One customer network: an IPv4 /24 or an IPv6 /48, announced by an ASN.

    >>> n = Net(4, "81.12.7.", 3320)
    >>> n.cidr, n.host(random.Random(1)).startswith("81.12.7.")
    ('81.12.7.0/24', True)
    >>> m = Net(6, "2a02:1f8:42:", 3320)
    >>> m.cidr, ipaddress.ip_address(m.host(random.Random(1))) in ipaddress.ip_network(m.cidr)
    ('2a02:1f8:42::/48', True)
    """

    __slots__ = ("version", "asn", "cidr", "_head")

    def __init__(self, version: int, head: str, asn: int) -> None:
        self.version = version
        self.asn = asn
        self._head = head
        self.cidr = f"{head}0/24" if version == 4 else f"{head}:/48"

    def host(self, rng: random.Random) -> str:
        """A random address inside the network."""
        if self.version == 4:
            return f"{self._head}{rng.randint(1, 254)}"
        g = rng.getrandbits
        return f"{self._head}{g(16):x}:{g(16):x}:{g(16):x}:{g(16):x}:{g(16):x}"

    def hosts(self, rng: random.Random, k: int) -> list[str]:
        """k distinct addresses inside the network."""
        out: list[str] = []
        while len(out) < k:
            ip = self.host(rng)
            if ip not in out:
                out.append(ip)
        return out

    def __repr__(self) -> str:
        return f"Net({self.cidr}, AS{self.asn})"


class Internet:
    """Allocator of distinct, public-looking networks, grouped per ASN into a few blocks.

    >>> net = Internet(random.Random(7))
    >>> a, b = net.net(7922), net.net(7922, v6=True)
    >>> ipaddress.ip_network(a.cidr).is_global, ipaddress.ip_network(b.cidr).is_global, a.cidr != net.net(7922).cidr
    (True, True, True)
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._v4_blocks: dict[int, list[str]] = {}
        self._v6_blocks: dict[int, list[str]] = {}
        self._used_blocks: set[str] = set()
        self._used_nets: set[str] = set()

    def net(self, asn: int, *, v6: bool = False) -> Net:
        """A network of asn that no other actor got from this allocator."""
        return self._net6(asn) if v6 else self._net4(asn)

    def _net4(self, asn: int) -> Net:
        rng = self._rng
        blocks = self._v4_blocks.setdefault(asn, [])
        for attempt in range(64):
            if not blocks or attempt % 8 == 7:
                blocks.append(self._new_v4_block())
            head = f"{rng.choice(blocks)}{rng.randint(0, 255)}."
            if head not in self._used_nets and ipaddress.ip_network(f"{head}0/24").is_global:
                self._used_nets.add(head)
                return Net(4, head, asn)
        raise RuntimeError(f"could not allocate an IPv4 /24 for AS{asn}")

    def _new_v4_block(self) -> str:
        rng = self._rng
        while True:
            a, b = rng.randint(1, 223), rng.randint(0, 255)
            block = f"{a}.{b}."
            if block not in self._used_blocks and ipaddress.ip_network(f"{block}0.0/16").is_global:
                self._used_blocks.add(block)
                return block

    def _net6(self, asn: int) -> Net:
        rng = self._rng
        blocks = self._v6_blocks.setdefault(asn, [])
        for attempt in range(64):
            if not blocks or attempt % 8 == 7:
                blocks.append(self._new_v6_block())
            head = f"{rng.choice(blocks)}{rng.getrandbits(16):x}:"
            if head not in self._used_nets:
                self._used_nets.add(head)
                return Net(6, head, asn)
        raise RuntimeError(f"could not allocate an IPv6 /48 for AS{asn}")

    def _new_v6_block(self) -> str:
        rng = self._rng
        while True:
            # 2400::/12 .. 2c00::/12 are regional-registry allocations, so they look like real ISPs
            block = f"{rng.randint(0x2400, 0x2C0F):x}:{rng.getrandbits(16):x}:"
            if block not in self._used_blocks and ipaddress.ip_network(f"{block}:/32").is_global:
                self._used_blocks.add(block)
                return block


class ExitPool:
    """The exits of a commercial proxy service: many residential networks plus some datacenter ones.

    Both the attacker and honest proxy customers rent from the same pool, so an
    exit's network alone says little about who is behind a request.

    >>> pool = ExitPool(Internet(random.Random(8)), random.Random(9), residential_nets=20, datacenter_nets=3)
    >>> ip, asn = pool.pick(random.Random(10))
    >>> asn in RESIDENTIAL_ASNS + CLOUD_ASNS, len(pool.nets)
    (True, 23)
    """

    def __init__(
        self,
        internet: Internet,
        rng: random.Random,
        *,
        residential_nets: int,
        datacenter_nets: int,
        v6: bool = False,
    ) -> None:
        self.v6 = v6
        self.nets: list[Net] = []
        self.exits: list[tuple[str, int]] = []
        for i in range(residential_nets + datacenter_nets):
            dc = i >= residential_nets
            net = internet.net(rng.choice(CLOUD_ASNS if dc else RESIDENTIAL_ASNS), v6=v6)
            # residential exits are single homes (one to a few per /24 or /48); datacenter exits are racks
            k = rng.randint(4, 16) if dc else rng.choice((1, 1, 2, 2, 3, 4))
            self.nets.append(net)
            self.exits.extend((ip, net.asn) for ip in net.hosts(rng, k))

    def pick(self, rng: random.Random) -> tuple[str, int]:
        """A random exit (address, ASN)."""
        return self.exits[int(rng.random() * len(self.exits))]
