"""Tests for detectors/network.py: network keys of addresses and per-network state."""

from __future__ import annotations

import ipaddress
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.config import NetworkConfig
from detectors.events import EventDecoder
from detectors.network import NetworkKeys, NetworkTracker


@pytest.mark.parametrize(
    "ip, v4, v6, expected",
    [
        ("203.0.113.7", 24, 48, "203.0.113.0/24"),
        ("203.0.113.255", 24, 48, "203.0.113.0/24"),
        ("10.1.2.3", 16, 48, "10.1.0.0/16"),
        ("10.1.2.3", 32, 48, "10.1.2.3/32"),
        ("10.1.2.3", 8, 48, "10.0.0.0/8"),
        ("10.1.2.3", 22, 48, "10.1.0.0/22"),
        ("2001:db8:42:1::9", 24, 48, "2001:db8:42::/48"),
        ("2001:db8:42:1::9", 24, 64, "2001:db8:42:1::/64"),
        ("2001:db8:42:1::9", 24, 128, "2001:db8:42:1::9/128"),
        ("2001:DB8:42:1::9", 24, 32, "2001:db8::/32"),
        ("::1", 24, 48, "::/48"),
    ],
)
def test_network_of(ip, v4, v6, expected):
    k = NetworkKeys(ipv4_prefix=v4, ipv6_prefix=v6)
    assert k.network_of(ip) == expected
    net, net_id, _ = k.lookup(ip)
    assert net == expected and net_id == zlib.crc32(expected.encode())


def test_network_ids_are_stable_across_instances_and_distinct_for_neighbours():
    a, b = NetworkKeys(), NetworkKeys()
    assert a.lookup("198.51.100.1")[:2] == b.lookup("198.51.100.200")[:2]
    assert a.lookup("198.51.100.1")[1] != a.lookup("198.51.101.1")[1]


def test_cache_is_bounded():
    k = NetworkKeys(cache_size=10)
    for i in range(100):
        k.network_of(f"10.0.{i}.1")
        assert len(k.cache) <= 10
    assert k.network_of("10.0.5.9") == "10.0.5.0/24"


@given(st.ip_addresses(v=4), st.integers(8, 32))
def test_ipv4_network_contains_the_address(addr, prefix):
    net = ipaddress.ip_network(NetworkKeys(ipv4_prefix=prefix).network_of(str(addr)))
    assert net.prefixlen == prefix and addr in net
    assert str(net) == str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


@given(st.ip_addresses(v=6), st.integers(16, 128))
def test_ipv6_network_contains_the_address(addr, prefix):
    net = ipaddress.ip_network(NetworkKeys(ipv6_prefix=prefix).network_of(str(addr)))
    assert net.prefixlen == prefix and addr in net


@given(st.text(alphabet="0123456789abcdef:.%/ ez", min_size=2, max_size=40) | st.ip_addresses().map(str))
def test_every_address_the_decoder_accepts_has_a_network(ip):
    ok, _ = EventDecoder().decode(
        b'{"event_id":"e","ts":1.0,"account_id":"a","ip":' + f'"{ip}"'.encode() + b"}", now=1.0
    )
    if ok:
        for v4, v6 in ((24, 48), (16, 64)):
            net = NetworkKeys(v4, v6).network_of(ip)
            ipaddress.ip_network(net)


# --- NetworkState / NetworkTracker ---------------------------------------------------------------


def tracker(**kw) -> NetworkTracker:
    return NetworkTracker(NetworkConfig(**{"max_networks": 1000, **kw}))


def test_awakened_counts_expire_with_the_window():
    t = tracker(window_s=300.0)
    s = t.observe("198.51.100.0/24", "a0", ts=0.0, young=False, flagged=True, out_tok=0, in_tok=0)
    counts = [t.mark_awakened(s, f"a{i}", float(i * 10)) for i in range(5)]
    assert counts == [1, 2, 3, 4, 5]
    # The same account again counts once.
    assert t.mark_awakened(s, "a4", 45.0) == 5
    # 330 s later: a0 (t=0), a1 (t=10), a2 (t=20) are out of a 300 s window.
    assert t.mark_awakened(s, "b", 330.0) == 3
    assert set(s.awakened) == {"a3", "a4", "b"}
    assert s.awakened_count(1000.0, 300.0) == 0


def test_awakened_accounts_per_network_are_capped():
    t = NetworkTracker(NetworkConfig(max_networks=1000), max_accounts_per_network=16)
    s = t.observe("n", "x", ts=0.0, young=False, flagged=False, out_tok=0, in_tok=0)
    for i in range(100):
        t.mark_awakened(s, f"a{i}", float(i))
    assert len(s.awakened) <= 16


def test_network_state_rates_and_shares():
    t = NetworkTracker(NetworkConfig())
    for i in range(60):
        s = t.observe("n", f"a{i % 6}", float(i), young=i % 2 == 0, flagged=i % 3 == 0, out_tok=300, in_tok=100)
    ev = s.evidence(60.0, 300.0)
    assert ev["network_accounts"] == 6
    assert 0.5 < ev["network_rps"] < 1.5
    assert ev["network_flagged_share"] == pytest.approx(1 / 3, abs=0.05)
    assert ev["network_young_share"] == pytest.approx(0.5, abs=0.05)
    assert ev["network_token_ratio"] == pytest.approx(3.0, rel=0.05)  # summed tokens, +50 once
    # Three of the six are young, none awakened: the other three are the network's ordinary customers.
    assert s.established(60.0, 300.0) == 3


def test_coordination_tells_one_operators_keys_from_many_customers():
    t = tracker()
    thief = t.observe("n", "x", ts=0.0, young=False, flagged=True, out_tok=0, in_tok=0)
    for i in range(8):  # eight keys, each through the same three servers, one tool
        for k in range(6):
            t.mark_awakened(thief, f"k{i}", float(i + k), address=10 + k % 3, client=7)
    assert thief.coordination() == (1.0, 1.0)
    ci = t.observe("m", "x", ts=0.0, young=False, flagged=True, out_tok=0, in_tok=0)
    for i in range(8):  # eight customers' CI jobs, each on its own runner, own client
        for k in range(6):
            t.mark_awakened(ci, f"c{i}", float(i + k), address=20 + i, client=i % 4)
    assert ci.coordination() == (0.0, 0.25)


def test_late_update_weighs_its_age_and_does_not_move_time_back():
    t = NetworkTracker(NetworkConfig())
    t.observe("n", "a", 100.0, young=False, flagged=False, out_tok=0, in_tok=0)
    s = t.observe("n", "b", 40.0, young=True, flagged=True, out_tok=0, in_tok=0)
    assert s.c_min == pytest.approx(1.5) and s.c_flagged == pytest.approx(0.5)  # a minute late: half
    assert s.c_hour == pytest.approx(1 + 0.5 ** (60 / 3600)) and s.young_hour == pytest.approx(0.5 ** (60 / 3600))
    assert s.last_ts == 100.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 7200.0), st.booleans(), st.booleans(), st.integers(0, 5000)),
                min_size=1, max_size=50),
       st.randoms(use_true_random=False))
def test_network_counts_do_not_depend_on_arrival_order(observations, rnd):
    shuffled = list(observations)
    rnd.shuffle(shuffled)
    states = []
    for order in (sorted(observations), shuffled):
        t = NetworkTracker(NetworkConfig())
        for i, (ts, young, flagged, tok) in enumerate(order):
            s = t.observe("n", f"a{i}", ts, young=young, flagged=flagged, out_tok=tok, in_tok=tok // 3)
        states.append(s)
    a, b = states
    for name in ("c_min", "c_flagged", "c_hour", "young_hour", "out_tok", "in_tok", "last_ts"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9, abs=1e-9), name


def test_accounts_per_network_are_capped():
    t = NetworkTracker(NetworkConfig(), max_accounts_per_network=10)
    for i in range(100):
        s = t.observe("n", f"a{i}", float(i), young=True, flagged=False, out_tok=0, in_tok=0)
    assert len(s.accounts) <= 10 and len(s.young) <= 10


def test_tracker_cap_on_networks():
    t = tracker(max_networks=1000)
    for i in range(3000):
        t.observe(
            f"10.{i // 256}.{i % 256}.0/24", "a", ts=float(i), young=False, flagged=False, out_tok=0, in_tok=0
        )
        assert len(t) <= 1000
    assert t.evicted >= 2000
    assert "10.11.183.0/24" in t.networks  # the newest survives


def test_tracker_expires_idle_networks_but_not_flagged_ones():
    t = tracker()
    t.observe("idle", "a", ts=0.0, young=False, flagged=False, out_tok=0, in_tok=0)
    flagged = t.observe("flagged", "a", ts=0.0, young=False, flagged=False, out_tok=0, in_tok=0)
    flagged.flagged_until = 10_000.0
    t.observe("busy", "a", ts=7000.0, young=False, flagged=False, out_tok=0, in_tok=0)
    assert t.expire(now=7300.0) == 1
    assert set(t.networks) == {"flagged", "busy"}
