"""Tests for detectors/pipeline.py: the Detector on small hand-built and simulated streams."""

from __future__ import annotations

import random
from collections import Counter
from functools import cache

import msgspec
import pytest

import traffic
from detectors.config import DetectorConfig, PolicyConfig, RuleConfig, parse_config
from detectors.events import Event
from detectors.pipeline import Detector, GroupStage, Observation, asn_key, group_keys
from detectors.policy import Decision, Policy, encode_decision
from traffic.arrival import out_of_step

T0 = 1_790_000_000.0
DAY = 86400.0
OLD = T0 - 400 * DAY
ENFORCING = {"throttle", "block"}


class Stream:
    """Builds a hand-made event stream; events are sorted by ts on the way out."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, ts: float, account: str, ip: str, **kw) -> None:
        kw.setdefault("input_tokens", 200)
        kw.setdefault("output_tokens", 300)
        self.events.append(Event(event_id=f"ev{len(self.events)}", ts=ts, account_id=account, ip=ip, **kw))

    def every(
        self,
        account: str,
        ip: str,
        start: float,
        end: float,
        period: float,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        **kw,
    ) -> None:
        t = start
        while t < end:
            self.add(t, account, ip, **kw)
            t += period + (rng.uniform(-jitter, jitter) if rng else 0.0)

    def background(self, start: float, end: float, people: int = 6) -> None:
        """A few ordinary people, so the detector has been watching from `start`."""
        rng = random.Random(99)
        for i in range(people):
            self.every(
                f"person{i}",
                f"192.0.2.{10 + i}",
                start + i,
                end,
                45.0,
                jitter=20.0,
                rng=rng,
                account_created_ts=OLD - i * DAY,
            )

    def sorted(self) -> list[Event]:
        return sorted(self.events, key=lambda e: e.ts)


def run(events: list[Event], cfg: DetectorConfig | None = None) -> tuple[list[Decision], list]:
    return Detector(cfg or DetectorConfig()).process(events)


def on(decisions: list[Decision], prefix: str) -> list[Decision]:
    return [d for d in decisions if d.scope == "account" and d.key.startswith(prefix)]


def assert_sorted(decisions: list[Decision]) -> None:
    assert [d.ts for d in decisions] == sorted(d.ts for d in decisions)


# --- hand-built streams -----------------------------------------------------------------------


def burst_stream(onset: float = T0 + 1200.0) -> Stream:
    s = Stream()
    s.background(T0, onset + 120.0)
    s.every("quiet", "198.51.100.7", T0 + 5.0, onset, 60.0, account_created_ts=OLD)
    s.every("quiet", "198.51.100.7", onset, onset + 60.0, 1 / 20, account_created_ts=OLD)
    return s


def test_old_quiet_account_bursting_is_throttled_within_seconds():
    onset = T0 + 1200.0
    decisions, rejects = run(burst_stream(onset).sorted())
    assert rejects == []
    mine = on(decisions, "quiet")
    assert mine, decisions
    first = mine[0]
    # From one request a minute to 20/s is far beyond burst_block_ratio: blocked at once.
    assert first.reason in ("account_burst", "account_burst_extreme") and first.action in ENFORCING
    assert onset <= first.ts <= onset + 5.0
    assert first.expires_at == first.ts + first.ttl_s
    assert first.evidence["rate_rps"] >= 8.0 and first.evidence["ratio"] >= 8.0
    assert {d.reason for d in mine} <= {"account_burst", "account_burst_extreme"}
    assert all(d.key == "quiet" for d in decisions)


def test_burst_within_the_block_ratio_is_throttled_first():
    # An account already busy at 0.5/s jumping to 20/s: a burst, but under burst_block_ratio of its baseline.
    onset = T0 + 1200.0
    s = Stream()
    s.background(T0, onset + 120.0)
    s.every("steady", "198.51.100.7", T0 + 5.0, onset, 2.0, account_created_ts=OLD)
    s.every("steady", "198.51.100.7", onset, onset + 60.0, 1 / 20, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    mine = on(decisions, "steady")
    assert mine
    first = mine[0]
    assert (first.reason, first.action) == ("account_burst", "throttle")
    assert onset <= first.ts <= onset + 5.0
    acfg = DetectorConfig().account
    assert acfg.burst_ratio <= first.evidence["ratio"] < acfg.burst_block_ratio
    assert first.limit_rps == PolicyConfig().rules["account_burst"].limit_rps
    assert decisions == mine


def test_steady_account_bursting_fifteen_fold_is_flagged():
    onset = T0 + 1200.0
    s = Stream()
    s.background(T0, onset + 120.0)
    s.every("steady", "198.51.100.7", T0 + 5.0, onset, 1.0, account_created_ts=OLD)
    s.every("steady", "198.51.100.7", onset, onset + 60.0, 1 / 15, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    mine = on(decisions, "steady")
    assert mine and mine[0].reason in ("account_burst", "account_burst_extreme")
    assert mine[0].ts <= onset + 10.0


def test_burst_right_after_start_up_is_not_judged_without_a_baseline():
    # The detector has watched for under burst_min_observed_s: an unknown baseline is not a burst.
    s = Stream()
    s.every("quiet", "198.51.100.7", T0, T0 + 30.0, 1 / 20, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    assert decisions == []


def test_enterprise_steady_from_the_start_and_its_surge_are_not_flagged():
    rng = random.Random(3)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    t = T0
    while t < T0 + 2400.0:
        rate = 15.0 if T0 + 1500.0 <= t < T0 + 1800.0 else 5.0  # x3 surge for five minutes
        s.add(t, "enterprise", "203.0.113.50", account_created_ts=OLD, input_tokens=500, output_tokens=400)
        t += rng.expovariate(rate)
    decisions, _ = run(s.sorted())
    assert on(decisions, "enterprise") == []
    assert decisions == []


def campaign_stream(n: int = 30) -> Stream:
    rng = random.Random(5)
    s = Stream()
    s.background(T0, T0 + 900.0)
    for i in range(n):
        start = T0 + 60.0 + i * 7.0
        s.every(
            f"young{i}",
            f"10.{i}.{i}.{i + 1}",
            start,
            T0 + 900.0,
            20.0,
            jitter=5.0,
            rng=rng,
            account_created_ts=T0 - 3600.0,
            payment_fp="pay_shared",
            input_tokens=40,
            output_tokens=2000,
            user_agent=f"python-requests/2.{i}",
        )
    return s


def test_young_accounts_sharing_payment_from_many_networks_are_blocked():
    decisions, _ = run(campaign_stream().sorted())
    mine = on(decisions, "young")
    blocked = {d.key for d in mine if d.reason == "campaign_cluster" and d.action == "block"}
    assert len(blocked) >= 20
    assert all(d.evidence["cluster"] == "pay" for d in mine if d.reason == "campaign_cluster")
    assert on(decisions, "person") == []


def test_campaign_joiner_is_caught_on_its_first_request():
    s = campaign_stream()
    s.add(
        T0 + 800.0,
        "latecomer",
        "172.16.9.9",
        account_created_ts=T0 - 600.0,
        payment_fp="pay_shared",
        input_tokens=40,
        output_tokens=2000,
    )
    decisions, _ = run(s.sorted())
    late = on(decisions, "latecomer")
    assert [(d.ts, d.reason, d.action) for d in late] == [(T0 + 800.0, "campaign_cluster", "block")]


def test_young_accounts_sharing_payment_but_not_harvesting_are_only_reviewed():
    s = Stream()
    for i in range(10):
        s.every(
            f"young{i}",
            f"10.{i}.0.1",
            T0 + i,
            T0 + 600.0,
            30.0,
            account_created_ts=T0 - 3600.0,
            payment_fp="pay_family",
            input_tokens=400,
            output_tokens=300,
        )
    decisions, _ = run(s.sorted())
    assert decisions
    assert {(d.reason, d.action) for d in decisions} == {("cluster_review", "review")}


def hackathon_stream() -> Stream:
    rng = random.Random(8)
    s = Stream()
    s.background(T0, T0 + 1800.0)
    for i in range(25):
        s.every(
            f"hacker{i}",
            "198.18.0.20",
            T0 + 300.0 + i * 3,
            T0 + 1800.0,
            40.0,
            jitter=15.0,
            rng=rng,
            account_created_ts=T0 - 1800.0 + i,
            prompt_fp="0123456789abcdef",
            user_agent="tutorial-sdk/1.0",
            input_tokens=300,
            output_tokens=350,
        )
    return s


def test_hackathon_on_one_address_is_not_blocked():
    decisions, _ = run(hackathon_stream().sorted())
    assert [d for d in decisions if d.action in ENFORCING] == []
    assert [d for d in decisions if d.scope == "network"] == []


def compromised_stream(onset: float = T0 + 900.0, keys: int = 15) -> Stream:
    rng = random.Random(4)
    s = Stream()
    s.background(T0, onset + 400.0, people=10)
    for i in range(keys):
        s.every(
            f"victim{i}",
            f"203.0.113.{i + 1}",
            onset + rng.uniform(0, 30),
            onset + 300.0,
            1.0,
            jitter=0.2,
            rng=rng,
            account_created_ts=OLD + i * DAY,
            input_tokens=100,
            output_tokens=400,
        )
    return s


def test_compromised_keys_waking_up_on_one_network_are_blocked():
    onset = T0 + 900.0
    decisions, _ = run(compromised_stream(onset).sorted())
    victims = on(decisions, "victim")
    fanout = {d.key for d in victims if d.reason == "network_fanout" and d.action == "block"}
    assert len(fanout) >= 12
    first = min(d.ts for d in victims if d.reason == "network_fanout")
    assert first - onset <= 120.0
    assert on(decisions, "person") == []
    ev = next(d.evidence for d in victims if d.reason == "network_fanout")
    assert ev["network_awakened_accounts"] >= DetectorConfig().network.min_accounts
    # The network itself, wholly taken over, is blocked in CIDR form.
    nets = [(d.key, d.reason) for d in decisions if d.scope == "network"]
    assert nets == [("203.0.113.0/24", "network_takeover")]


def test_compromised_keys_with_sparse_earlier_use_are_blocked():
    rng = random.Random(4)
    onset = T0 + 1200.0
    s = Stream()
    s.background(T0, onset + 400.0, people=10)
    for i in range(15):
        created = OLD + i * DAY
        # Their owners used them now and then, from home.
        s.every(
            f"victim{i}",
            f"100.{64 + i}.{i}.7",
            T0 + rng.uniform(0, 300),
            onset - 10.0,
            300.0,
            account_created_ts=created,
        )
        s.every(
            f"victim{i}",
            f"203.0.113.{i + 1}",
            onset + rng.uniform(0, 30),
            onset + 300.0,
            1.0,
            jitter=0.2,
            rng=rng,
            account_created_ts=created,
        )
    decisions, _ = run(s.sorted())
    fanout = {d.key for d in on(decisions, "victim") if d.reason == "network_fanout"}
    assert len(fanout) >= 12
    assert on(decisions, "person") == []


def test_allowlisted_network_gets_no_network_decision():
    cfg = DetectorConfig(policy=PolicyConfig(allow_networks=frozenset({"203.0.113.0/24"})))
    decisions, _ = run(compromised_stream().sorted(), cfg)
    assert [d for d in decisions if d.scope == "network"] == []
    assert on(decisions, "victim")  # the accounts themselves are not allowlisted


def test_corporate_nat_of_old_accounts_at_human_pace_is_not_flagged():
    rng = random.Random(6)
    s = Stream()
    s.background(T0, T0 + 2400.0)
    for i in range(40):
        t = T0 + rng.uniform(0, 120)
        while t < T0 + 2400.0:
            for k in range(rng.randint(1, 4)):  # a short session of quick requests
                s.add(
                    t + k * rng.uniform(1, 4),
                    f"staff{i}",
                    f"198.51.100.{1 + i % 2}",
                    account_created_ts=OLD + i * DAY,
                )
            t += rng.expovariate(1 / 120.0)
    decisions, _ = run(s.sorted())
    assert decisions == []


def test_old_accounts_spread_over_many_networks_are_not_a_fanout():
    s = Stream()
    s.background(T0, T0 + 1300.0, people=10)
    for i in range(15):
        s.every(f"victim{i}", f"100.{64 + i}.{i}.1", T0 + 900.0 + i, T0 + 1200.0, 1.0, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    assert [d for d in decisions if d.reason == "network_fanout"] == []


def test_duplicates_are_counted_once():
    base = burst_stream().sorted()
    dup: list[Event] = []
    for e in base:
        dup.append(e)
        if int(e.ts * 20) % 3 == 0:
            dup.append(msgspec.structs.replace(e))  # the same delivery again, same event_id
    det_once, det_dup = Detector(DetectorConfig()), Detector(DetectorConfig())
    d1, _ = det_once.process(base)
    d2, _ = det_dup.process(dup)
    assert [encode_decision(d) for d in d1] == [encode_decision(d) for d in d2]
    assert det_dup.accounts.duplicates == len(dup) - len(base) > 0
    quiet = det_dup.accounts.accounts.states["quiet"]
    assert quiet.n == sum(1 for e in base if e.account_id == "quiet")


def test_late_events_beyond_max_lateness_are_rejected():
    cfg = parse_config({"event_time": {"max_lateness_s": 600.0}})
    det = Detector(cfg)
    s = Stream()
    s.add(T0 + 1000.0, "a", "192.0.2.1")
    s.add(T0 + 500.0, "a", "192.0.2.1")  # 500 s behind its account: still in time
    s.add(T0 + 399.0, "a", "192.0.2.1")  # 601 s behind its account: late
    decisions, rejects = det.process(s.events)
    assert [r.reason for r in rejects] == ["late"]
    assert msgspec.json.decode(rejects[0].raw)["ts"] == T0 + 399.0
    assert det.accounts.accounts.states["a"].n == 2
    # An account the detector no longer holds is late once its state would have expired.
    far = T0 + 1000.0 - cfg.account.idle_expiry_s - 1.0
    _, rejects = det.process([Event(event_id="z", ts=far, account_id="c", ip="192.0.2.3")])
    assert [r.reason for r in rejects] == ["late"]
    assert "c" not in det.accounts.accounts.states


def test_partition_skew_does_not_make_other_accounts_late():
    # Two partitions read out of step: account b's events are 15 min behind a's, but in order for b.
    cfg = parse_config({"event_time": {"max_lateness_s": 600.0}})
    det = Detector(cfg)
    s = Stream()
    s.add(T0 + 2000.0, "a", "192.0.2.1")
    for i in range(5):
        s.add(T0 + 1100.0 + i, "b", "192.0.2.2")
    _, rejects = det.process(s.events)
    assert rejects == []
    assert det.accounts.accounts.states["b"].n == 5
    assert det.accounts.now == T0 + 2000.0  # detector time never goes back


def test_decisions_come_out_in_ts_order():
    s = compromised_stream()
    for e in campaign_stream().events:
        s.add(
            e.ts + 600.0,
            e.account_id,
            e.ip,
            account_created_ts=e.account_created_ts + 600.0,
            payment_fp=e.payment_fp,
            input_tokens=40,
            output_tokens=2000,
        )
    for e in burst_stream(T0 + 1000.0).events:
        if e.account_id == "quiet":
            s.add(e.ts, e.account_id, e.ip, account_created_ts=OLD)
    decisions, _ = run(s.sorted())
    reasons = {d.reason for d in decisions}
    assert reasons >= {"network_fanout", "campaign_cluster"}
    assert reasons & {"account_burst", "account_burst_extreme"}
    assert_sorted(decisions)


def test_allowlisted_account_is_never_decided_on():
    cfg = DetectorConfig(policy=PolicyConfig(allow_accounts=frozenset({"quiet"})))
    decisions, _ = run(burst_stream().sorted(), cfg)
    assert decisions == []


def test_shadow_rule_reviews_without_enforcing():
    rules = dict(PolicyConfig().rules)
    rules["account_burst"] = RuleConfig(action="throttle", ttl_s=600.0, limit_rps=0.2, shadow=True)
    rules["account_burst_extreme"] = RuleConfig(action="block", ttl_s=900.0, shadow=True)
    decisions, _ = run(burst_stream().sorted(), DetectorConfig(policy=PolicyConfig(rules=rules)))
    assert decisions
    assert all(d.action == "review" and d.shadow for d in decisions)


def test_determinism_on_hand_built_streams():
    events = compromised_stream().sorted() + [
        msgspec.structs.replace(e, ts=e.ts + 2000.0) for e in campaign_stream().sorted()
    ]
    a, _ = run(events)
    b, _ = run(events)
    assert a and [encode_decision(d) for d in a] == [encode_decision(d) for d in b]


def test_group_keys():
    o = Observation(
        T0, "a", "10.0.0.0/24", 1, 64500, True, True, 0.0, 10, 1, T0 - 60, "ua", None, "pay", 3.0, 1
    )
    cfg = DetectorConfig().cluster
    assert group_keys(o, cfg)[:2] == ["10.0.0.0/24", asn_key(64500)]
    assert "pay:pay" in group_keys(o, cfg)
    old = msgspec.structs.replace(o, young=False, asn=None)
    assert group_keys(old, cfg) == ["10.0.0.0/24"]


def test_group_stage_owns_only_its_share():
    """Two group stages that split the keys between them see what one stage sees, network-wise."""
    cfg = DetectorConfig()
    det = Detector(cfg)
    obs, _, _ = det.accounts.process(compromised_stream().sorted())
    whole = det.groups.process(obs)
    fanout = sorted(d.key for d in whole if d.reason == "network_fanout")
    assert fanout
    shares = []
    for parity in (0, 1):
        stage = GroupStage(cfg, Policy(cfg.policy, cfg.version), owns=lambda k, p=parity: hash(k) % 2 == p)
        shares += [d.key for d in stage.process(obs) if d.reason == "network_fanout"]
    assert sorted(shares) == fanout


def test_decisions_do_not_depend_on_batch_size():
    s = Stream()
    for i in range(6):
        s.add(
            T0 + i,
            f"member{i}",
            f"10.{i}.0.1",
            account_created_ts=T0 - 600.0,
            payment_fp="pay_x",
            input_tokens=40,
            output_tokens=2000,
        )
    # member6 joins the campaign at T0+10, then rotates exits and becomes a proxy harvester at T0+13.
    for j, ip in enumerate(["10.6.0.1", "10.7.0.1", "10.8.0.1", "10.9.0.1"]):
        s.add(
            T0 + 10.0 + j,
            "member6",
            ip,
            account_created_ts=T0 - 600.0,
            payment_fp="pay_x",
            input_tokens=40,
            output_tokens=2000,
        )
    events = s.sorted()
    whole, _ = run(events)
    det = Detector(DetectorConfig())
    one_by_one = [d for e in events for d in det.process([e])[0]]
    first_whole = min(d.ts for d in on(whole, "member6"))
    first_single = min(d.ts for d in on(one_by_one, "member6"))
    assert first_single == T0 + 10.0
    assert first_whole == first_single
    assert [encode_decision(d) for d in whole] == [encode_decision(d) for d in one_by_one]


# --- simulated scenarios ----------------------------------------------------------------------


@cache
def simulated(name: str, seed: int = 3) -> tuple[tuple[Event, ...], dict]:
    sim = traffic.generate(name, seed=seed, duration_s=900, scale=0.05, attack_scale=0.1)
    events = tuple(msgspec.convert(e, Event) for e in sim.events())
    return events, sim.labels()["accounts"]


@cache
def detected(name: str) -> tuple[tuple[Decision, ...], tuple]:
    decisions, rejects = run(list(simulated(name)[0]))
    return tuple(decisions), tuple(rejects)


def label(labels: dict, d: Decision) -> str:
    lab = labels.get(d.key, {})
    return f"{lab.get('label')}:{lab.get('group')}"


@pytest.mark.parametrize("name", ["benign", "mixed", "hydra", "surge"])
def test_simulated_scenarios_spare_benign_accounts(name):
    labels = simulated(name)[1]
    decisions, rejects = detected(name)
    assert rejects == ()
    assert_sorted(decisions)
    hit = Counter(label(labels, d) for d in decisions if d.action in ENFORCING and d.scope == "account")
    assert not [g for g in hit if g.startswith("benign")], hit
    assert [d for d in decisions if d.scope != "account" and d.action in ENFORCING] == []


@pytest.mark.parametrize("name", ["mixed", "hydra"])
def test_simulated_hydra_is_blocked(name):
    labels = simulated(name)[1]
    decisions, _ = detected(name)
    hydra = {d.key for d in decisions if d.action == "block" and label(labels, d) == "attack:hydra"}
    attackers = {k for k, v in labels.items() if v["group"] == "hydra"}
    assert len(hydra) >= 0.2 * len(attackers)


def test_simulated_run_is_deterministic():
    a, _ = detected("mixed")
    b, _ = run(list(simulated("mixed")[0]))
    assert a and [encode_decision(d) for d in a] == [encode_decision(d) for d in b]


def test_rate_headroom_lifts_burst_thresholds_for_one_account_or_organisation():
    from detectors.config import parse_config
    from detectors.events import Event as Ev
    from detectors.pipeline import Detector as Det

    def run(cfg_doc: dict) -> list[str]:
        det = Det(parse_config(cfg_doc))
        quiet = [Ev(event_id="q", ts=1.0, account_id="other", ip="192.0.2.1")]
        burst = [Ev(event_id=f"b{i}", ts=1000.0 + i / 20, account_id="big", ip="198.51.100.7", org_id="org_e",
                    account_created_ts=0.0) for i in range(400)]
        decisions, _ = det.process(quiet + burst)
        return [d.key for d in decisions]

    assert run({}) == ["big"]
    assert run({"account": {"rate_headroom": {"big": 5}}}) == []
    assert run({"account": {"rate_headroom": {"org_e": 5}}}) == []


def _partitioned(events: list[Event], cfg: DetectorConfig, n: int) -> list[Decision]:
    """The workers' routing, in one process: account stages by account; group stages by key, networks
    first, then the cluster keys in order, with the crowd on the network, stage after stage."""
    import zlib

    from detectors.pipeline import AccountStage, split_keys
    from detectors.policy import Policy

    def part(key: str) -> int:
        return zlib.crc32(key.encode()) % n

    accounts = [AccountStage(cfg, Policy(cfg.policy, cfg.version)) for _ in range(n)]
    groups = [GroupStage(cfg, Policy(cfg.policy, cfg.version)) for _ in range(n)]
    out: list[Decision] = []
    for e in events:
        o = accounts[part(e.account_id)].process_one(e, out, [])
        if o is None:
            continue
        nets, clusters = split_keys(o, group_keys(o, cfg.cluster))
        crowd = 0
        for p in sorted({part(k) for k in nets}):
            c = groups[p].observe_networks(o, [k for k in nets if part(k) == p], out)
            if p == part(o.net):
                crowd = c
        i = 0  # the cluster keys in order, a run held by one stage at a time, until a strong decision
        while i < len(clusters):
            j = i + 1
            while j < len(clusters) and part(clusters[j]) == part(clusters[i]):
                j += 1
            if groups[part(clusters[i])].observe_clusters(o, clusters[i:j], crowd, out):
                break
            i = j
    return out


def _strongest(decisions) -> dict:
    rank = {"review": 1, "throttle": 2, "block": 3}
    best: dict = {}
    for d in decisions:
        if rank[d.action] > rank.get(best.get((d.scope, d.key)), 0):
            best[(d.scope, d.key)] = d.action
    return best


def test_partitioned_stages_decide_like_one_process():
    # Scale-out must not change who is enforced: the crowd that spares a hackathon lives with the
    # network, so it travels with the observation to the stages holding its clusters, visited in the
    # order one process would. (Full scale: a hackathon big enough to need that protection.)
    sim = traffic.generate("mixed", seed=11, duration_s=1800.0)
    events = tuple(msgspec.convert(e, Event) for e in sim.events())
    labels = sim.labels()["accounts"]
    cfg = DetectorConfig()
    one = _strongest(Detector(cfg).process(list(events))[0])
    four = _strongest(_partitioned(list(events), cfg, 4))
    enforced_one = {k for k, a in one.items() if a != "review"}
    enforced_four = {k for k, a in four.items() if a != "review"}
    differ = enforced_one ^ enforced_four
    assert len(differ) <= max(1, len(enforced_one) // 100), sorted(differ)
    # Without the crowd handed on, eight honest hackathon accounts are blocked here. What remains: each
    # stage expires its windows on its own clock, so a borderline cluster can tip at another moment.
    benign = [k for k in enforced_four if labels.get(k[1], {}).get("label") == "benign"]
    assert len(benign) <= 1, benign


def test_input_partitions_read_out_of_step_decide_like_in_order():
    # A catch-up read of partitions one after another: adding each late request to the decayed counts
    # whole made honest accounts' 2 s and 10 s rates jump, and 33 honest accounts were blocked as
    # bursts here. Weighted by its age, a late request leaves the rates as in-order arrival would.
    sim = traffic.generate("mixed", seed=11, duration_s=900.0)
    events = [msgspec.convert(e, Event) for e in sim.events()]
    labels = sim.labels()["accounts"]
    shuffled = out_of_step(events)  # four partitions, arrays of 1,000, six arrays a fetch
    assert shuffled != events and sorted(shuffled, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
    cfg = DetectorConfig()
    in_order, rejects = Detector(cfg).process(events)
    as_read, late = Detector(cfg).process(shuffled)
    assert rejects == [] and late == []
    enforced_in_order = {k for k, a in _strongest(in_order).items() if a != "review"}
    enforced_out_of_step = {k for k, a in _strongest(as_read).items() if a != "review"}
    added = [k for k in enforced_out_of_step - enforced_in_order if labels.get(k[1], {}).get("label") != "attack"]
    assert added == []
    assert len(enforced_in_order ^ enforced_out_of_step) <= max(2, len(enforced_in_order) // 100)
