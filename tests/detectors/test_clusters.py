"""Tests for detectors/clusters.py: LSH bands of prompt SimHashes and clusters of young accounts."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detectors.clusters import ClusterTracker, cluster_keys, prompt_bands
from detectors.config import ClusterConfig

u64 = st.integers(min_value=0, max_value=2**64 - 1)


def hexfp(x: int) -> str:
    return f"{x:016x}"


# --- prompt_bands -------------------------------------------------------------------------------


@pytest.mark.parametrize("bands", range(1, 9))
def test_bands_partition_the_fingerprint(bands):
    fp = "0123456789abcdef"
    keys = prompt_bands(fp, bands)
    assert len(keys) == bands
    assert len(set(keys)) == bands
    assert "".join(k.split(":", 1)[1] for k in keys) == fp
    assert [k.split(":", 1)[0] for k in keys] == [f"f{i}" for i in range(bands)]


def test_bands_ignore_hex_case():
    assert prompt_bands("ABCDEF0123456789", 4) == prompt_bands("abcdef0123456789", 4)


def test_same_bits_in_different_positions_do_not_share_a_band():
    a = prompt_bands("aaaa000000000000", 4)
    b = prompt_bands("0000aaaa00000000", 4)
    assert "f0:aaaa" in a and "f1:aaaa" in b
    assert not ({k for k in a if "aaaa" in k} & set(b))


@given(u64, st.integers(min_value=1, max_value=8), st.data())
def test_pigeonhole_near_fingerprints_share_a_band(x, bands, data):
    flips = data.draw(st.sets(st.integers(0, 63), max_size=bands - 1))
    y = x
    for bit in flips:
        y ^= 1 << bit
    assert set(prompt_bands(hexfp(x), bands)) & set(prompt_bands(hexfp(y), bands))


@given(u64, u64, st.integers(min_value=1, max_value=8))
def test_fingerprints_sharing_a_band_agree_on_those_bits(x, y, bands):
    shared = set(prompt_bands(hexfp(x), bands)) & set(prompt_bands(hexfp(y), bands))
    assume(shared)
    for key in shared:
        i = int(key.split(":")[0][1:])
        width = 16 // bands
        lo = i * width
        hi = 16 if i == bands - 1 else lo + width
        assert hexfp(x)[lo:hi] == hexfp(y)[lo:hi]


def test_cluster_keys():
    cfg = ClusterConfig()
    assert cluster_keys(None, None, None, None, cfg) == []
    assert cluster_keys(None, "pay_1", None, None, cfg) == ["pay:pay_1"]
    assert cluster_keys(None, None, "sdk/1", None, cfg) == []  # a client alone is no cluster
    bucket = int(7 * 3600.0 // cfg.signup_bucket_s)
    assert cluster_keys(None, None, "sdk/1", 7 * 3600.0, cfg) == [f"signup:sdk/1|{bucket}"]
    keys = cluster_keys("0123456789abcdef", "pay_1", "sdk/1", 0.0, cfg)
    assert keys == ["f0:0123", "f1:4567", "f2:89ab", "f3:cdef", "pay:pay_1", "signup:sdk/1|0"]


def test_signup_bucket_groups_accounts_created_together():
    cfg = ClusterConfig(signup_bucket_s=3600.0)
    a = cluster_keys(None, None, "ua", 3600.0 * 5 + 10, cfg)
    b = cluster_keys(None, None, "ua", 3600.0 * 5 + 3000, cfg)
    c = cluster_keys(None, None, "ua", 3600.0 * 6 + 1, cfg)
    assert a == b != c


# --- ClusterTracker ------------------------------------------------------------------------------


def cfg(**kw) -> ClusterConfig:
    base = {
        "min_accounts": 4,
        "min_networks": 3,
        "max_network_share": 0.5,
        "window_s": 600.0,
        "max_clusters": 1000,
    }
    base.update(kw)
    return ClusterConfig(**base)


def test_flagged_with_enough_accounts_and_networks():
    t = ClusterTracker(cfg())
    flags = [t.observe("pay:x", f"a{i}", ts=float(i), net=i, harvest=True).flagged for i in range(6)]
    assert flags == [False, False, False, True, True, True]
    c = t.clusters["pay:x"]
    assert c.evidence() == {"cluster_accounts": 6, "cluster_networks": 6, "cluster_harvest_share": 1.0}


def test_not_flagged_with_too_few_accounts():
    t = ClusterTracker(cfg(min_accounts=5, min_networks=2))
    for i in range(4):
        c = t.observe("pay:x", f"a{i}", ts=float(i), net=i, harvest=True)
    assert not c.flagged
    # The same account again is not a new member.
    for i in range(10):
        c = t.observe("pay:x", "a0", ts=10.0 + i, net=0, harvest=True)
    assert not c.flagged and c.members_n == 4


def test_not_flagged_from_too_few_networks():
    # A hackathon: many accounts, two addresses.
    t = ClusterTracker(cfg(min_networks=3, max_network_share=1.0))
    for i in range(30):
        c = t.observe("f0:abcd", f"a{i}", ts=float(i), net=i % 2, harvest=False)
    assert c.members_n == 30 and c.networks_n == 2
    assert not c.flagged


def test_not_flagged_when_one_network_holds_too_many():
    t = ClusterTracker(cfg(min_accounts=4, min_networks=3, max_network_share=0.5))
    # 6 accounts on network 0, one each on 1, 2, 3: 6/9 > 0.5
    nets = [0] * 6 + [1, 2, 3]
    for i, net in enumerate(nets):
        c = t.observe("pay:x", f"a{i}", ts=float(i), net=net, harvest=True)
    assert c.networks_n == 4 and c.members_n == 9
    assert not c.flagged
    # Spread out enough and it is a campaign: 6 of 12.
    for i, net in enumerate([4, 5, 6], start=len(nets)):
        c = t.observe("pay:x", f"a{i}", ts=20.0 + i, net=net, harvest=True)
    assert c.flagged


@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6), st.booleans()), min_size=1, max_size=60),
    st.integers(2, 8),
    st.integers(1, 6),
    st.sampled_from([0.3, 0.5, 0.8, 1.0]),
)
def test_flag_matches_its_definition(members, min_accounts, min_networks, share):
    t = ClusterTracker(
        cfg(min_accounts=min_accounts, min_networks=min_networks, max_network_share=share, window_s=1e9)
    )
    last: dict[int, tuple[int, bool]] = {}
    for i, (acct, net, harvest) in enumerate(members):
        c = t.observe("k", f"a{acct}", ts=float(i), net=net, harvest=harvest)
        last[acct] = (net, harvest)
    live = list(last.values())
    per_net: dict[int, int] = {}
    for net, _ in live:
        per_net[net] = per_net.get(net, 0) + 1
    expected = (
        len(live) >= min_accounts
        and len(per_net) >= min_networks
        and max(per_net.values()) / len(live) <= share
    )
    assert c.members_n == len(live)
    assert c.networks_n == len(per_net)
    assert c.flagged == expected
    assert c.harvest_share == pytest.approx(sum(h for _, h in live) / len(live))


def test_members_expire_after_the_window():
    t = ClusterTracker(cfg(window_s=600.0))
    for i in range(5):
        c = t.observe("pay:x", f"a{i}", ts=float(i), net=i, harvest=True)
    assert c.flagged
    # Much later one new member arrives: the others have left the window.
    c = t.observe("pay:x", "late", ts=1000.0, net=9, harvest=True)
    assert c.members_n == 1 and not c.flagged
    assert list(c.members) == ["late"]


def test_stale_flag_is_re_evaluated_within_thirty_seconds():
    t = ClusterTracker(cfg(window_s=100.0))
    for i in range(5):
        t.observe("pay:x", f"a{i}", ts=float(i), net=i, harvest=True)
    c = t.observe("pay:x", "a4", ts=140.0, net=4, harvest=True)  # an existing member, 140 s later
    assert not c.flagged and c.members_n == 1


def test_tracker_expire_drops_clusters_with_no_live_member():
    t = ClusterTracker(cfg(window_s=600.0))
    t.observe("pay:old", "a", ts=0.0, net=1, harvest=True)
    t.observe("pay:new", "b", ts=500.0, net=1, harvest=True)
    assert t.expire(now=700.0) == 1
    assert set(t.clusters) == {"pay:new"}


def test_members_tracked_per_cluster_are_capped():
    t = ClusterTracker(cfg(max_members_tracked=8))
    for i in range(100):
        c = t.observe("pay:x", f"a{i}", ts=float(i), net=i, harvest=True)
        assert len(c.members) <= 8
    assert "a99" in c.members and "a0" not in c.members


def test_number_of_clusters_is_capped():
    t = ClusterTracker(cfg(max_clusters=1000))
    for i in range(3000):
        t.observe(f"pay:{i}", "a", ts=float(i), net=1, harvest=False)
        assert len(t) <= 1000
    assert t.evicted >= 2000
    assert "pay:2999" in t.clusters
