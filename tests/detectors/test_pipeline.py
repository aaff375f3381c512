"""Tests for detectors/pipeline.py: the Detector on small hand-built and simulated streams."""

from __future__ import annotations

from collections import Counter
from functools import cache

import msgspec
import pytest

import traffic
from backtest.score import score
from detectors.account_stage import AccountStage
from detectors.config import DetectorConfig, PolicyConfig, RuleConfig, parse_config
from detectors.events import Event
from detectors.group_stage import GroupStage
from detectors.network import asn_key
from detectors.observation import Observation
from detectors.pipeline import Detector
from detectors.policy import Decision, Policy, encode_decision
from detectors.routing import GroupRouter, partition_of
from tests.detectors.streams import (
    ENFORCING,
    OLD,
    T0,
    Stream,
    assert_sorted,
    burst_stream,
    campaign_stream,
    compromised_stream,
    on,
    run,
)
from traffic.arrival import out_of_step

# --- hand-built streams -----------------------------------------------------------------------


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
    assert reasons >= {"network_fanout", "campaign"}
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


def test_first_stops_are_the_network_then_the_clusters():
    o = Observation(
        T0, "a", "10.0.0.0/24", 1, 64500, True, True, 0.0, 10, 1, T0 - 60, "ua", None, "pay", 3.0, 1
    )
    cfg = DetectorConfig().cluster
    [(p, (_, nets, clusters, found))] = GroupRouter(cfg, 1).first_stops(o)
    assert (p, nets, found) == (0, ["10.0.0.0/24", asn_key(64500)], -1)
    assert clusters[-1] == "pay:pay"  # the card last: it reads what the account's other clusters found
    bare = msgspec.structs.replace(o, asn=None, user_agent=None, payment_fp=None)
    assert [item[1:] for _, item in GroupRouter(cfg, 1).first_stops(bare)] == [(["10.0.0.0/24"], [], -1)]
    # With partitions, the ASN goes to its own partition when the network's does not hold it.
    n = next(n for n in range(2, 64) if partition_of("10.0.0.0/24", n) != partition_of(asn_key(64500), n))
    stops = GroupRouter(cfg, n).first_stops(o)
    assert [(p, item[1], item[2]) for p, item in stops] == [
        (partition_of("10.0.0.0/24", n), ["10.0.0.0/24"], clusters), (partition_of(asn_key(64500), n), [asn_key(64500)], [])]


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
    # Nor through a network, an ASN or a card: what the gateway would stop, scored.
    events = [msgspec.structs.asdict(e) for e in simulated(name)[0]]
    report = score(events, {"accounts": labels}, list(decisions), explain=True)
    assert report["summary"]["benign_accounts_hit"] == 0, report["explain"]


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


def _partitioned(events: list[Event], cfg: DetectorConfig, n: int, batch: int) -> list[Decision]:
    """The workers' stages and routing in one process, every partition held: account stages by account,
    then batches of observations routed to the group stages (``GroupRouter.visit_held``, as a worker
    does with its batch)."""
    accounts = [AccountStage(cfg, Policy(cfg.policy, cfg.version)) for _ in range(n)]
    groups = [GroupStage(cfg, Policy(cfg.policy, cfg.version)) for _ in range(n)]
    router = GroupRouter(cfg.cluster, n)
    out: list[Decision] = []
    for i in range(0, len(events), batch):
        work: list = []
        for e in events[i:i + batch]:
            o = accounts[partition_of(e.account_id, n)].process_one(e, out, [])
            if o is not None:
                work.extend(router.first_stops(o))
        away, _ = router.visit_held(work, groups.__getitem__, out)
        assert not away  # every partition is held here
    return out


def _strongest(decisions) -> dict:
    rank = {"review": 1, "throttle": 2, "block": 3}
    best: dict = {}
    for d in decisions:
        if rank[d.action] > rank.get(best.get((d.scope, d.key)), 0):
            best[(d.scope, d.key)] = d.action
    return best


@pytest.mark.parametrize("batch", [1, 2000])
def test_partitioned_stages_decide_like_one_process(batch):
    # Scale-out must not change who is enforced: what an account's earlier cluster keys found travels with
    # its observation to the stages holding the later ones (its card last).
    sim = traffic.generate("mixed", seed=11, duration_s=1800.0)
    events = tuple(msgspec.convert(e, Event) for e in sim.events())
    labels = sim.labels()["accounts"]
    cfg = DetectorConfig()
    one = _strongest(Detector(cfg).process(list(events))[0])
    four = _strongest(_partitioned(list(events), cfg, 4, batch))
    enforced_one = {k for k, a in one.items() if a != "review"}
    enforced_four = {k for k, a in four.items() if a != "review"}
    # Each observation is followed from stage to stage before the next is taken, and what a visit found
    # travels with it: four stages decide on the same keys as one.
    assert enforced_four == enforced_one, sorted(enforced_one ^ enforced_four)
    benign = [k for k in enforced_four if labels.get(k[1], {}).get("label") == "benign"]
    assert benign == []


def test_input_partitions_read_out_of_step_decide_like_in_order():
    # A catch-up read of partitions one after another: adding each late request to the decayed counts
    # whole made honest accounts' 2 s and 10 s rates jump, and 33 honest accounts were blocked as bursts
    # here. Weighted by its age, a late request leaves the rates as in-order arrival would.
    sim = traffic.generate("mixed", seed=11, duration_s=900.0)
    events = [msgspec.convert(e, Event) for e in sim.events()]
    labels = sim.labels()["accounts"]
    shuffled = out_of_step(events)  # four partitions, arrays of 1,000, six arrays a fetch
    assert shuffled != events and sorted(shuffled, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)
    cfg = DetectorConfig()
    in_order, rejects = Detector(cfg).process(events)
    as_read, late = Detector(cfg).process(shuffled)
    assert rejects == [] and late == []
    # Scored as the gateway enforces: read out of step, no honest account is hit, and about as much
    # attack traffic is stopped (a campaign's card or cluster may tip sooner or later: the same accounts
    # may be stopped by other decisions, so the decisions themselves need not match).
    plain = [msgspec.structs.asdict(e) for e in events]
    ordered = score(plain, {"accounts": labels}, in_order)["summary"]
    as_read_score = score(plain, {"accounts": labels}, as_read, explain=True)
    assert ordered["benign_accounts_hit"] == 0
    assert as_read_score["summary"]["benign_accounts_hit"] == 0, as_read_score["explain"]
    assert as_read_score["summary"]["attack_leakage"] <= ordered["attack_leakage"] + 0.05


def test_a_decision_carries_the_latest_time_read_never_its_events_earlier_one():
    # The contract: a decision's ts is the detector's watermark. Read in order that is the triggering
    # event's time; with a later event of another account read first (a partition running ahead), the
    # same decision can only be said at that later time, and is stamped so.
    events = burst_stream().sorted()
    [first, *_] = run(events)[0]
    i = next(k for k, e in enumerate(events) if e.account_id == first.key and e.ts == first.ts)
    ahead = Event(event_id="ahead", ts=first.ts + 120.0, account_id="elsewhere", ip="192.0.2.200")
    decisions, _ = run(events[:i] + [ahead] + events[i:])
    late = next(d for d in decisions if d.key == first.key)
    assert (late.reason, late.ts, late.expires_at) == (first.reason, first.ts + 120.0, first.ts + 120.0 + late.ttl_s)
