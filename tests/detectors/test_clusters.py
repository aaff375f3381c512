"""Tests for detectors/clusters.py: LSH bands of prompt SimHashes and clusters of young accounts."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from detectors.clusters import (
    AUTOMATED,
    CAMPAIGN,
    HARVEST,
    ROTATING,
    YOUNG,
    ClusterTracker,
    cluster_keys,
    prompt_bands,
)
from detectors.config import ClusterConfig

u64 = st.integers(min_value=0, max_value=2**64 - 1)


def hexfp(x: int) -> str:
    return f"{x:016x}"


# --- prompt_bands -------------------------------------------------------------------------------


def _slices(bands: int) -> list[tuple[int, int]]:
    """(shift, bits) of each band, from the top of the 64 bits."""
    width = 64 // bands
    out = []
    for i in range(bands):
        bits = 64 - i * width if i == bands - 1 else width
        out.append((64 - i * width - bits, bits))
    return out


@pytest.mark.parametrize("bands", range(1, 9))
def test_bands_partition_the_fingerprint(bands):
    fp = "0123456789abcdef"
    keys = prompt_bands(fp, bands)
    assert len(keys) == bands
    assert len(set(keys)) == bands
    rebuilt = sum(int(k.split(":", 1)[1], 16) << shift for k, (shift, _) in zip(keys, _slices(bands), strict=True))
    assert rebuilt == int(fp, 16)
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
        shift, bits = _slices(bands)[int(key.split(":")[0][1:])]
        mask = ((1 << bits) - 1) << shift
        assert x & mask == y & mask


def test_cluster_keys():
    cfg = ClusterConfig()
    assert cluster_keys(None, None, None, None, cfg) == []
    assert cluster_keys(None, "pay_1", None, None, cfg) == ["pay:pay_1"]
    assert cluster_keys(None, None, "sdk/1", None, cfg) == []  # a client alone is no cluster
    bucket = int(7 * 3600.0 // cfg.signup_bucket_s)
    assert cluster_keys(None, None, "sdk/1", 7 * 3600.0, cfg) == [f"signup:sdk/1|{bucket}"]
    keys = cluster_keys("0123456789abcdef", "pay_1", "sdk/1", 0.0, cfg)
    assert keys == [*prompt_bands("0123456789abcdef", cfg.prompt_bands), "signup:sdk/1|0", "pay:pay_1"]  # card last


def test_signup_bucket_groups_accounts_created_together():
    cfg = ClusterConfig(signup_bucket_s=3600.0)
    a = cluster_keys(None, None, "ua", 3600.0 * 5 + 10, cfg)
    b = cluster_keys(None, None, "ua", 3600.0 * 5 + 3000, cfg)
    c = cluster_keys(None, None, "ua", 3600.0 * 6 + 1, cfg)
    assert a == b != c


# --- ClusterTracker ------------------------------------------------------------------------------


def cfg(**kw) -> ClusterConfig:
    base = {"window_s": 600.0, "max_clusters": 1000}
    base.update(kw)
    return ClusterConfig(**base)


def join(t: ClusterTracker, key: str, account: str, ts: float, net: int = 0, card: int = 0, client: int = 0,
         cohort: int = 0, prompt: int = 0, flags: int = 0):
    return t.observe(key, account, ts, net, card, client, cohort, prompt, flags)


def test_a_key_seen_from_one_account_is_no_cluster():
    t = ClusterTracker(cfg())
    assert [join(t, "pay:x", "a", float(i)) for i in range(5)] == [None] * 5  # the same account again
    assert len(t) == 0
    c = join(t, "pay:x", "b", 10.0)
    assert c is not None and list(c.members) == ["b"]  # the first account joins at its next request
    assert list(join(t, "pay:x", "a", 11.0).members) == ["b", "a"]


@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 4), st.integers(0, 3), st.integers(0, 2),
                       st.integers(0, 127)), min_size=2, max_size=80),
)
def test_running_counts_match_the_members(steps):
    t = ClusterTracker(cfg(window_s=1e9))
    join(t, "k", "seed", 0.0)  # the key is known: every account below is a member
    last: dict[str, tuple[int, int, int, int]] = {"seed": (0, 0, 0, 0)}
    for i, (acct, net, card, client, flags) in enumerate(steps):
        c = join(t, "k", f"a{acct}", float(i + 1), net=net, card=card, client=client, flags=flags)
        old = last.get(f"a{acct}", (0, 0, 0, 0))[3] & CAMPAIGN
        last[f"a{acct}"] = (net, card, client, flags | old)
    assert c is not None
    live = {a: v for a, v in last.items() if a in c.members}
    assert len(live) == len(c.members) == len(last) - (1 if "seed" not in c.members else 0)

    def shared(values: list[int]) -> int:
        return sum(1 for v in values if v and values.count(v) >= 2)

    assert c.nets.shared == sum(1 for v in live.values() if [x[0] for x in live.values()].count(v[0]) >= 2)
    assert c.cards.shared == shared([v[1] for v in live.values()])
    assert c.clients.shared == shared([v[2] for v in live.values()])
    for bit in (HARVEST, YOUNG, ROTATING, AUTOMATED):
        assert c.count(bit) == sum(1 for v in live.values() if v[3] & bit)


def test_a_member_keeps_its_campaign_mark():
    t = ClusterTracker(cfg())
    join(t, "pay:x", "a", 0.0)
    c = join(t, "pay:x", "b", 1.0, flags=HARVEST)
    t.mark_campaign(c, "b")
    assert c.count(CAMPAIGN) == 1
    c = join(t, "pay:x", "b", 2.0, flags=0)  # its next request does not carry the mark: it is kept
    assert c.count(CAMPAIGN) == 1 and c.count(HARVEST) == 0


def test_the_members_gap_between_requests_is_learnt():
    t = ClusterTracker(cfg(window_s=1e6))
    join(t, "pay:x", "seed", 0.0)
    for k in range(5):
        for i in range(4):
            join(t, "pay:x", f"a{i}", 1000.0 * k + i)
    assert 900.0 < t.clusters["pay:x"].gap_s < 1100.0


def test_members_expire_after_the_window():
    t = ClusterTracker(cfg(window_s=600.0))
    join(t, "pay:x", "seed", 0.0)
    for i in range(5):
        c = join(t, "pay:x", f"a{i}", float(i), net=i)
    assert len(c) == 5
    c = join(t, "pay:x", "late", 1000.0, net=9)  # much later: the others have left the window
    assert list(c.members) == ["late"] and len(c.nets) == 1


def test_tracker_expire_drops_clusters_with_no_live_member():
    t = ClusterTracker(cfg(window_s=600.0))
    for key, ts in (("pay:old", 0.0), ("pay:new", 500.0)):
        join(t, key, "a", ts)
        join(t, key, "b", ts)
    assert t.expire(now=700.0) == 1
    assert set(t.clusters) == {"pay:new"}


def test_members_tracked_per_cluster_are_capped():
    t = ClusterTracker(cfg(max_members_tracked=8))
    join(t, "pay:x", "seed", 0.0)
    for i in range(100):
        c = join(t, "pay:x", f"a{i}", float(i + 1), net=i)
        assert len(c.members) <= 8 and len(c.nets) <= 8
    assert "a99" in c.members and "a0" not in c.members


def test_number_of_clusters_is_capped():
    t = ClusterTracker(cfg(max_clusters=1000))
    for i in range(3000):
        join(t, f"pay:{i}", "a", float(i))
        join(t, f"pay:{i}", "b", float(i))
        assert len(t) <= 1000
    assert t.evicted >= 2000
    assert "pay:2999" in t.clusters
