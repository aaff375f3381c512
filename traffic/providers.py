"""Networks many customers share: a residential proxy service, a VPN service, mobile carriers' NATs
and a public cloud region, and the exits an attacker rents from them.

Attackers rent from the same providers honest people use, so a network alone says
little about who is behind a request: one cloud /24 holds the CI runners of many
customers and an attacker's servers; one mobile carrier-grade NAT address carries
thousands of subscribers; a VPN server is shared by everyone connected to it.
Providers other than the proxy service are allocated on first use, so a scenario that
does not need them draws no addresses for them.
"""

from __future__ import annotations

import random
from functools import cached_property

from .addresses import CLOUD_ASNS, MOBILE_ASNS, RESIDENTIAL_ASNS, VPN_ASNS, ExitPool, Internet, Net
from .draws import log_uniform
from .world import World

EXIT_KINDS = ("residential", "datacenter", "mobile", "vpn", "ipv6")


class Exits:
    """Exits to send requests from: fixed addresses, or prefixes (IPv6 /48s, a NAT's /24s) that give
    another address inside them on every use.

    >>> ex = Exits(fixed=[("81.2.3.4", 3320), ("81.2.3.5", 3320)])
    >>> len(ex), ex.at(3, random.Random(1))
    (2, ('81.2.3.5', 3320))
    >>> v6 = Exits(nets=[Net(6, "2a02:1f8:42:", 3320)])
    >>> v6.pick(random.Random(1)) != v6.pick(random.Random(2))
    True
    """

    __slots__ = ("_fixed", "_nets")

    def __init__(self, *, fixed: list[tuple[str, int]] | None = None, nets: list[Net] | None = None) -> None:
        if bool(fixed) == bool(nets):
            raise ValueError("give either fixed addresses or networks, not both and not none")
        self._fixed = fixed or []
        self._nets = nets or []

    def __len__(self) -> int:
        return len(self._fixed) or len(self._nets)

    def sample(self, rng: random.Random, k: int) -> Exits:
        """k of these exits (all of them if there are fewer); prefixes stay prefixes."""
        if self._fixed:
            return Exits(fixed=rng.sample(self._fixed, min(k, len(self._fixed))))
        return Exits(nets=rng.sample(self._nets, min(k, len(self._nets))))

    def pick(self, rng: random.Random) -> tuple[str, int]:
        """A random exit (address, ASN)."""
        return self.at(int(rng.random() * len(self)), rng)

    def at(self, i: int, rng: random.Random) -> tuple[str, int]:
        """Exit number i (modulo the number of exits); a prefix gives a random address inside it."""
        if self._fixed:
            return self._fixed[i % len(self._fixed)]
        net = self._nets[i % len(self._nets)]
        return net.host(rng), net.asn


class CloudRegion:
    """A public cloud region: a few dozen /24s of two or three cloud ASNs, each holding many tenants.

    CI runners, a PaaS's egress, serverless functions and an attacker's rented
    servers all get their addresses here, so they share /24s.

    >>> region = CloudRegion(Internet(random.Random(1)), random.Random(2), nets=10)
    >>> len(region.lease(random.Random(3), 5)), len(region.nets)
    (5, 10)
    """

    def __init__(self, internet: Internet, rng: random.Random, *, nets: int) -> None:
        asns = rng.sample(CLOUD_ASNS, 3)
        self.nets = [internet.net(rng.choice(asns)) for _ in range(nets)]

    def lease(self, rng: random.Random, k: int, nets: list[Net] | None = None) -> list[tuple[str, int]]:
        """k distinct machine addresses in the given /24s (any of the region's by default)."""
        pool = nets or self.nets
        seen: set[str] = set()
        out: list[tuple[str, int]] = []
        while len(out) < k and len(seen) < 254 * len(pool):
            net = rng.choice(pool)
            ip = net.host(rng)
            if ip not in seen:
                seen.add(ip)
                out.append((ip, net.asn))
        return out


class Providers:
    """The shared providers of one scenario: a proxy service, a VPN, mobile carriers, a cloud region."""

    def __init__(self, world: World, *, v6_proxy: bool = False) -> None:
        self._world = world
        rng = world.rng("proxy_service", "plan")
        self.proxy = ExitPool(
            world.internet,
            rng,
            residential_nets=round(log_uniform(rng, 150, 600)),
            datacenter_nets=rng.randint(10, 40),
            v6=v6_proxy,
        )

    @cached_property
    def vpn(self) -> Exits:
        """A commercial VPN's servers: a few to a few dozen per hosting /24, shared by every subscriber."""
        w = self._world
        rng = w.rng("vpn_service", "plan")
        servers: list[tuple[str, int]] = []
        for _ in range(rng.randint(8, 30)):
            net = w.internet.net(rng.choice(VPN_ASNS))
            servers += [(ip, net.asn) for ip in net.hosts(rng, rng.randint(4, 24))]
        return Exits(fixed=servers)

    @cached_property
    def mobile(self) -> Exits:
        """Carrier-grade NATs of a few mobile carriers: each connection gets an address of a NAT /24."""
        w = self._world
        rng = w.rng("mobile_carriers", "plan")
        carriers = rng.sample(MOBILE_ASNS, rng.randint(2, 4))
        return Exits(nets=[w.internet.net(asn) for asn in carriers for _ in range(rng.randint(2, 6))])

    @cached_property
    def cloud(self) -> CloudRegion:
        """The cloud region customers' machines and attackers' servers share."""
        w = self._world
        return CloudRegion(w.internet, w.rng("cloud_region", "plan"), nets=40)

    def rent(self, kind: str, k: int, rng: random.Random) -> Exits:
        """k exits of one kind, as an attacker rents them (k is a wish: a VPN has only so many servers).

        residential: the proxy service's exits, then more homes of the same kind of
        service; datacenter: servers packed into /24s, half of them /24s of the shared
        cloud region; mobile: addresses of the carriers' NATs (a mobile proxy farm);
        vpn: the VPN's servers; ipv6: /48s, each handing out a new address per use.
        """
        w = self._world
        if kind == "residential":
            pool = self.proxy.exits
            if k <= len(pool):
                return Exits(fixed=rng.sample(pool, k))
            fixed = list(pool)
            while len(fixed) < k:
                net = w.internet.net(rng.choice(RESIDENTIAL_ASNS))
                fixed += [(ip, net.asn) for ip in net.hosts(rng, min(k - len(fixed), rng.randint(1, 4)))]
            return Exits(fixed=fixed)
        if kind == "datacenter":
            servers: dict[str, int] = {}
            while len(servers) < k:
                n = min(k - len(servers), rng.randint(4, 64))
                shared = rng.random() < 0.5
                net = rng.choice(self.cloud.nets) if shared else w.internet.net(rng.choice(CLOUD_ASNS))
                servers.update((ip, net.asn) for ip in net.hosts(rng, n))
            return Exits(fixed=list(servers.items()))
        if kind == "mobile":
            # a mobile proxy farm: phones on the carriers, each behind an address of a carrier NAT
            phones = dict(self.mobile.pick(rng) for _ in range(k))
            return Exits(fixed=list(phones.items()))
        if kind == "vpn":
            return self.vpn.sample(rng, k)
        if kind == "ipv6":
            asns = RESIDENTIAL_ASNS if rng.random() < 0.5 else CLOUD_ASNS
            return Exits(nets=[w.internet.net(rng.choice(asns), v6=True) for _ in range(k)])
        raise ValueError(f"unknown exit kind {kind!r}; known: {', '.join(EXIT_KINDS)}")
