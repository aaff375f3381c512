import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from traffic.addresses import CLOUD_ASNS, RESIDENTIAL_ASNS, ExitPool, Internet


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.booleans())
def test_networks_are_distinct_public_and_hold_their_hosts(seed, v6):
    internet = Internet(random.Random(seed))
    rng = random.Random(seed + 1)
    nets = [internet.net(rng.choice(RESIDENTIAL_ASNS), v6=v6) for _ in range(200)]
    assert len({n.cidr for n in nets}) == 200
    for n in nets[:50]:
        net = ipaddress.ip_network(n.cidr)
        assert net.is_global and net.prefixlen == (48 if v6 else 24)
        assert all(ipaddress.ip_address(h) in net for h in n.hosts(rng, 3))


def test_exit_pool_mixes_residential_and_datacenter_exits():
    pool = ExitPool(Internet(random.Random(3)), random.Random(4), residential_nets=100, datacenter_nets=10)
    asns = {asn for _, asn in pool.exits}
    assert asns & set(RESIDENTIAL_ASNS) and asns & set(CLOUD_ASNS)
    assert len({ip for ip, _ in pool.exits}) == len(pool.exits)


def test_ipv6_exit_pool_has_at_most_a_few_residential_exits_per_48():
    pool = ExitPool(
        Internet(random.Random(5)), random.Random(6), residential_nets=50, datacenter_nets=0, v6=True
    )
    per48: dict[str, int] = {}
    for ip, _ in pool.exits:
        assert ipaddress.ip_address(ip).version == 6
        k = str(ipaddress.ip_network(f"{ip}/48", strict=False))
        per48[k] = per48.get(k, 0) + 1
    assert max(per48.values()) <= 4 and len(per48) == 50
