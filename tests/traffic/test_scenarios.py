import ipaddress
import re
from collections import defaultdict
from functools import cache

import pytest
from traffic_helpers import max_in_window, per_account

import traffic
from traffic.scenarios import DEFAULT_T0

DURATION = 1200.0
PEAK = (DEFAULT_T0 % 86400) / 3600  # daytime, so office and people groups are busy in a short window
BENIGN = {"plain", "integration", "heavy", "batch", "corp_nat", "hackathon", "proxy_customer"}
LOOKALIKE_GROUPS = {
    "rotating_newcomer",
    "long_answers",
    "signup_wave",
    "org_seats",
    "agent_tool",
    "ci_runners",
    "paas_egress",
    "serverless_fleet",
}
CAMPAIGNS = (
    "campaign",
    "campaign_aged",
    "campaign_low_ratio",
    "campaign_own_cards",
    "campaign_own_exits",
    "campaign_no_fp",
    "campaign_dataset",
    "campaign_slow",
    "stolen_modest",
    "glacial_shared_cards",
    "glacial_own_cards",
    "adversary",
)
ATTACKS = {
    "mixed": {"hydra", "burst", "compromised", "slow_drip"},
    "hydra": {"hydra"},
    "hydra_churn": {"hydra"},
    "slow_drip": {"slow_drip"},
    "compromised": {"compromised"},
    "burst": {"burst"},
    "ipv6": {"hydra", "slow_drip"},
    "no_fp": {"hydra", "burst", "compromised", "slow_drip"},
    "surge": {"hydra"},
    "benign": set(),
    **{name: {name} for name in CAMPAIGNS},
    **{f"honest_{g}": set() for g in LOOKALIKE_GROUPS},
}
REQUIRED = {"event_id": str, "ts": float, "account_id": str, "ip": str}
OPTIONAL = {
    "asn": int,
    "user_agent": str,
    "endpoint": str,
    "model": str,
    "input_tokens": int,
    "output_tokens": int,
    "status": int,
    "account_created_ts": float,
    "prompt_fp": str,
    "payment_fp": str,
}


def make(name, seed=7):
    return traffic.generate(
        name, seed=seed, duration_s=DURATION, scale=0.05, attack_scale=0.1, peak_hour=PEAK
    )


@cache
def run(name):
    sim = make(name)
    return list(sim.events()), sim.labels()


def group(labels, ev):
    return labels["accounts"][ev["account_id"]]["group"] or "plain"


def by_group(name):
    events, labels = run(name)
    out = defaultdict(list)
    for ev in events:
        out[group(labels, ev)].append(ev)
    return out


def test_scenario_registry_matches_expectations():
    assert set(traffic.SCENARIOS) == set(ATTACKS)
    with pytest.raises(KeyError):
        traffic.generate("nope")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_events_follow_the_contract(name):
    events, labels = run(name)
    assert events
    ids = set()
    last = DEFAULT_T0
    for ev in events:
        for k, t in REQUIRED.items():
            assert isinstance(ev[k], t), (k, ev)
        for k, v in ev.items():
            if k not in REQUIRED:
                assert isinstance(v, OPTIONAL[k]) and not isinstance(v, bool), (k, ev)
        assert last <= ev["ts"] < DEFAULT_T0 + DURATION
        last = ev["ts"]
        ipaddress.ip_address(ev["ip"])
        assert ev["input_tokens"] >= 0 and ev["output_tokens"] >= 0 and ev["asn"] >= 0 and ev["status"] == 200
        assert ev["account_created_ts"] <= ev["ts"]
        if "prompt_fp" in ev:
            assert re.fullmatch(r"[0-9a-f]{16}", ev["prompt_fp"])
        assert 1 <= len(ev["event_id"]) <= 128
        ids.add(ev["event_id"])
    assert len(ids) == len(events)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_labels_cover_accounts_and_promised_groups(name):
    events, labels = run(name)
    assert set(labels) == {"variant", "t0", "duration", "accounts"}
    assert labels["variant"] == name and labels["t0"] == DEFAULT_T0 and labels["duration"] == DURATION
    seen = {ev["account_id"] for ev in events}
    accounts = labels["accounts"]
    assert seen <= set(accounts)
    assert len(seen) >= 0.85 * len(accounts)  # labels are a superset only by people idle since before t0
    for lab in accounts.values():
        assert set(lab) == {"label", "group", "onset", "created"}
        if lab["label"] == "attack":
            assert DEFAULT_T0 < lab["onset"] < DEFAULT_T0 + DURATION
        else:
            assert lab["label"] == "benign" and lab["onset"] is None
    groups = {(accounts[a]["label"], accounts[a]["group"] or "plain") for a in seen}
    assert {g for label, g in groups if label == "attack"} == ATTACKS[name]
    # in a 20-minute window a look-alike may happen to be quiet (no CI run, no sign-up yet)
    assert BENIGN <= {g for label, g in groups if label == "benign"} <= BENIGN | LOOKALIKE_GROUPS


def test_same_seed_same_events_other_seed_other_events():
    a = list(make("mixed", seed=11).events())
    sim = make("mixed", seed=11)
    assert list(sim.events()) == a
    assert list(sim.events()) == a  # events() can be called again
    assert list(make("mixed", seed=12).events()) != a


def test_no_fp_drops_fingerprints_everywhere():
    events, _ = run("no_fp")
    assert not any("prompt_fp" in ev or "payment_fp" in ev for ev in events)
    assert any("prompt_fp" in ev for ev in run("mixed")[0])


def test_ipv6_scenario_has_ipv6_attack_exits_and_some_ipv6_people():
    g = by_group("ipv6")
    for name in ("hydra", "slow_drip"):
        assert all(ipaddress.ip_address(ev["ip"]).version == 6 for ev in g[name])
    assert any(ipaddress.ip_address(ev["ip"]).version == 6 for ev in g["plain"])
    assert any(ipaddress.ip_address(ev["ip"]).version == 4 for ev in g["plain"])


@pytest.mark.parametrize("name", ["hydra", "hydra_churn"])
def test_hydra_accounts_are_young_slow_spread_and_harvesting(name):
    hydra = by_group(name)["hydra"]
    accounts = per_account(hydra)
    assert len(accounts) >= 10
    for evs in accounts.values():
        assert evs[0]["ts"] - evs[0]["account_created_ts"] < 6 * 3600 + 1
        assert max_in_window([e["ts"] for e in evs], 60.0) <= 30  # well under 1 request/s
    assert sum(e["output_tokens"] for e in hydra) / len(hydra) > 2000
    assert len({ipaddress.ip_network(f"{e['ip']}/24", strict=False) for e in hydra}) > 50
    if name == "hydra_churn":
        assert max(evs[-1]["ts"] - evs[0]["ts"] for evs in accounts.values()) <= 6 * 60 + 1


def test_hydra_accounts_share_cards_and_topics():
    hydra = by_group("hydra")["hydra"]
    cards = defaultdict(set)
    for e in hydra:
        cards[e["payment_fp"]].add(e["account_id"])
    assert max(len(a) for a in cards.values()) >= 2
    assert len({e["prompt_fp"] for e in hydra}) < len(hydra)


def test_proxy_customers_share_networks_with_the_hydra():
    g = by_group("hydra")
    net = lambda e: ipaddress.ip_network(f"{e['ip']}/24", strict=False)  # noqa: E731
    assert {net(e) for e in g["proxy_customer"]} & {net(e) for e in g["hydra"]}


def test_hackathon_is_young_accounts_on_one_address():
    hack = by_group("mixed")["hackathon"]
    assert len({e["ip"] for e in hack}) == 1
    for evs in per_account(hack).values():
        assert 0 < evs[0]["ts"] - evs[0]["account_created_ts"] < 3600


def test_corp_nat_is_many_accounts_on_two_addresses_of_one_24():
    nat = by_group("mixed")["corp_nat"]
    ips = {e["ip"] for e in nat}
    assert len(ips) <= 2 and len({ipaddress.ip_network(f"{i}/24", strict=False) for i in ips}) == 1
    assert len({e["account_id"] for e in nat}) >= 3


def test_burst_reaches_ten_requests_a_second():
    for evs in per_account(by_group("burst")["burst"]).values():
        assert max_in_window([e["ts"] for e in evs], 5.0) >= 50


def test_compromised_keys_are_old_accounts_on_one_datacenter_24():
    events, labels = run("compromised")
    comp = [
        e
        for e in events
        if group(labels, e) == "compromised" and e["ts"] >= labels["accounts"][e["account_id"]]["onset"]
    ]
    assert len({ipaddress.ip_network(f"{e['ip']}/24", strict=False) for e in comp}) == 1
    assert all(e["ts"] - e["account_created_ts"] > 30 * 86400 for e in comp)
    rates = [len(evs) / (evs[-1]["ts"] - evs[0]["ts"]) for evs in per_account(comp).values()]
    assert 0.5 < sum(rates) / len(rates) < 1.6


def test_slow_drip_accounts_each_keep_their_own_exit():
    drip = per_account(by_group("slow_drip")["slow_drip"])
    ips = [{e["ip"] for e in evs} for evs in drip.values()]
    assert all(len(s) == 1 for s in ips)
    assert len({ipaddress.ip_network(f"{next(iter(s))}/24", strict=False) for s in ips}) == len(ips)
    for evs in drip.values():
        assert all(b["ts"] - a["ts"] >= 30.0 for a, b in zip(evs, evs[1:], strict=False))


def test_surge_triples_benign_traffic_for_a_while():
    sim = traffic.generate("surge", seed=3, duration_s=3600.0, scale=0.05, attack_scale=0.05, peak_hour=PEAK)
    labels = sim.labels()["accounts"]
    per_min = defaultdict(int)
    for ev in sim.events():
        if labels[ev["account_id"]]["group"] in (None, "corp_nat", "proxy_customer"):
            per_min[int((ev["ts"] - DEFAULT_T0) // 60)] += 1
    counts = sorted(per_min[m] for m in range(60))
    assert counts[-10] > 2 * counts[20]
