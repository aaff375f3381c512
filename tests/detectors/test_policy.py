"""Tests for detectors/policy.py: findings to decisions, allowlists, shadow mode, de-duplication."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.config import PolicyConfig, RuleConfig
from detectors.policy import STRENGTH, Decision, Policy, decision_id, encode_decision

DEFAULT_RULES = dict(PolicyConfig().rules)
RULES = {
    **DEFAULT_RULES,
    # One shadow rule of each enforcing kind, so shadow mode meets real decisions on the same key.
    "population_outlier": RuleConfig(action="block", ttl_s=300.0, shadow=True),
    "campaign_review": RuleConfig(action="throttle", ttl_s=1200.0, limit_rps=1.0, shadow=True),
}
SHARE = 0.2
CFG = PolicyConfig(
    rules=RULES,
    refresh_before_expiry_share=SHARE,
    allow_accounts=frozenset({"vip"}),
    allow_networks=frozenset({"10.0.0.0/24"}),
    allow_asns=frozenset({64500}),
)
KEYS = {
    "account": ["a1", "a2", "vip"],
    "network": ["198.51.100.0/24", "10.0.0.0/24"],
    "asn": ["64501", "64500"],
}
ALLOWLISTED = {("account", "vip"), ("network", "10.0.0.0/24"), ("asn", "64500")}



def in_force(p: Policy, scope: str, key: str, ts: float) -> bool:
    """Whether the policy has a throttle or block on the key at ``ts`` (what it remembers in force)."""
    cur = p.ledger.active.get((scope, key))
    return cur is not None and cur[0] >= 2 and cur[1] <= ts < cur[2]

def decide(
    p: Policy, scope="account", key="a1", rule="campaign", ts=1000.0, score=0.5, evidence=None
):
    return p.decide(scope, key, rule, ts=ts, score=score, evidence=evidence or {})


# --- examples ---------------------------------------------------------------------------------


def test_decision_has_contract_fields_and_absolute_expiry():
    p = Policy(CFG, version="v9")
    d = decide(p, rule="account_burst", ts=1234.5, score=0.123456, evidence={"ratio": 9.0})
    assert isinstance(d, Decision)
    assert (d.ts, d.scope, d.key, d.action, d.reason) == (
        1234.5,
        "account",
        "a1",
        "throttle",
        "account_burst",
    )
    assert d.ttl_s == 600.0 and d.expires_at == 1234.5 + 600.0
    assert d.limit_rps == 0.2 and d.score == 0.1235 and d.evidence == {"ratio": 9.0}
    assert d.config_version == "v9" and d.shadow is False
    doc = json.loads(encode_decision(d))
    assert {"ts", "scope", "key", "action", "ttl_s", "reason", "score", "evidence", "limit_rps"} <= set(doc)
    assert "shadow" not in doc  # defaults are omitted


def test_block_has_no_limit_rps():
    d = decide(Policy(CFG))
    assert d.action == "block" and d.limit_rps is None
    assert "limit_rps" not in json.loads(encode_decision(d))


def test_unknown_rule_is_an_error_not_silence():
    # A misspelt rule name in code must fail loudly: returning nothing would disable the rule unnoticed.
    with pytest.raises(KeyError, match="no_such_rule"):
        decide(Policy(CFG), rule="no_such_rule")
    with pytest.raises(KeyError, match="no_such_rule"):
        Policy(CFG).would_decide("account", "a", "no_such_rule", 1.0)


@pytest.mark.parametrize("scope, key", sorted(ALLOWLISTED))
def test_allowlisted_keys_never_get_a_decision(scope, key):
    p = Policy(CFG)
    for rule in RULES:
        assert p.decide(scope, key, rule, ts=1.0, score=1.0, evidence={}) is None
    assert not in_force(p, scope, key, 2.0)
    assert p.expire(now=1e12) == 0  # nothing was recorded for it


def test_asn_allowlist_needs_a_decimal_key():
    p = Policy(CFG)
    assert p.allowlisted("asn", "64500")
    assert not p.allowlisted("asn", "AS64500")
    assert not p.allowlisted("asn", "64501")
    assert not p.allowlisted("other", "vip")


def test_same_finding_is_not_re_emitted_until_refresh():
    p = Policy(CFG)
    first = decide(p, ts=1000.0)
    assert first is not None
    assert decide(p, ts=1000.0) is None  # reprocessing the same event never extends a block
    ttl = RULES["campaign"].ttl_s
    refresh_at = 1000.0 + ttl * (1 - SHARE)
    assert decide(p, ts=refresh_at - 1.0) is None
    again = decide(p, ts=refresh_at + 1.0)
    assert again is not None and again.expires_at == refresh_at + 1.0 + ttl
    assert again.expires_at > first.expires_at


def test_after_expiry_a_finding_goes_out_again():
    p = Policy(CFG)
    d = decide(p, rule="account_burst", ts=0.0)
    assert decide(p, rule="account_burst", ts=d.expires_at + 1.0) is not None


def test_stronger_action_always_goes_out_weaker_does_not():
    p = Policy(CFG)
    assert decide(p, rule="account_burst", ts=0.0).action == "throttle"
    assert decide(p, rule="account_burst_extreme", ts=1.0).action == "block"
    assert decide(p, rule="account_burst", ts=2.0) is None  # a throttle under a block says nothing new
    assert decide(p, rule="population_outlier", ts=3.0) is None  # shadow: review


def test_shadow_rule_gives_review_with_shadow_flag_and_is_not_in_force():
    p = Policy(CFG)
    d = decide(p, rule="population_outlier", ts=10.0)
    assert d.action == "review" and d.shadow is True and d.limit_rps is None
    assert not in_force(p, "account", "a1", 11.0)
    d2 = decide(p, rule="campaign_review", ts=10.0, key="a2")
    assert d2.action == "review" and d2.shadow is True and d2.limit_rps is None
    # A real throttle still goes out over a shadow review.
    assert decide(p, rule="account_burst", ts=12.0).action == "throttle"
    assert in_force(p, "account", "a1", 13.0)


def test_allow_lifts_and_the_next_finding_decides_again():
    p = Policy(CFG)
    assert decide(p, ts=0.0) is not None
    assert in_force(p, "account", "a1", 1.0)
    lift = p.allow("account", "a1", ts=5.0, ttl_s=60.0, reason="manual")
    assert (lift.action, lift.ttl_s, lift.expires_at, lift.reason) == ("allow", 60.0, 65.0, "manual")
    assert not in_force(p, "account", "a1", 6.0)
    again = decide(p, ts=6.0)
    assert again is not None and again.action == "block"


def test_decision_ids_are_stable_per_scope_key_rule_window():
    ttl = RULES["campaign"].ttl_s
    a = decide(Policy(CFG), ts=100.0)
    b = decide(Policy(CFG), ts=200.0)  # same TTL-sized window
    c = decide(Policy(CFG), ts=ttl + 100.0)  # next window
    assert a.id == b.id == decision_id("account", "a1", "campaign", 0)
    assert c.id != a.id
    assert decide(Policy(CFG), key="a2", ts=100.0).id != a.id
    assert decide(Policy(CFG), scope="network", key="a1", ts=100.0).id != a.id
    assert decide(Policy(CFG), rule="payment_campaign", ts=100.0).id != a.id
    assert len(a.id) == 20 and int(a.id, 16) >= 0


def test_in_force_and_expire():
    p = Policy(CFG)
    decide(p, rule="account_burst", ts=0.0, key="a1")
    decide(p, rule="campaign", ts=0.0, key="a2")
    assert in_force(p, "account", "a1", 599.0) and not in_force(p, "account", "a1", 600.0)
    assert p.expire(now=1000.0) == 1
    assert in_force(p, "account", "a2", 1000.0)
    assert p.expire(now=1000.0) == 0


# --- properties over random sequences of findings --------------------------------------------

rules = st.sampled_from(sorted(RULES))
scopes_keys = st.sampled_from([(s, k) for s, ks in KEYS.items() for k in ks])
op = st.one_of(
    st.tuples(st.just("find"), scopes_keys, rules, st.floats(0.0, 1500.0)),
    st.tuples(st.just("allow"), scopes_keys, st.just(""), st.floats(0.0, 100.0)),
)


def strength(action: str) -> int:
    return STRENGTH[action]


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=60))
def test_policy_invariants(ops):
    p = Policy(CFG, version="vX")
    ts = 1_790_000_000.0
    # What the stream of decisions says is in force per key: (strength, expires_at, ttl).
    said: dict[tuple[str, str], tuple[int, float, float]] = {}
    for kind, (scope, key), rule, dt in ops:
        ts += dt
        if kind == "allow":
            d = p.allow(scope, key, ts=ts, ttl_s=60.0, reason="manual")
            assert d.action == "allow" and d.expires_at == ts + 60.0
            said.pop((scope, key), None)
            continue
        d = p.decide(scope, key, rule, ts=ts, score=0.7, evidence={"x": 1})
        rc = RULES.get(rule)
        if rc is None or (scope, key) in ALLOWLISTED:
            assert d is None
            continue
        action = "review" if rc.shadow else rc.action
        cur = said.get((scope, key))
        if cur is not None and cur[1] <= ts:
            cur = None
        if d is not None:
            assert (d.scope, d.key, d.reason, d.action, d.shadow) == (scope, key, rule, action, rc.shadow)
            assert d.ttl_s == rc.ttl_s and d.expires_at == ts + rc.ttl_s and d.ts == ts
            assert (d.limit_rps is not None) == (action == "throttle")
            assert d.id == decision_id(scope, key, rule, int(ts // rc.ttl_s))
            assert d.config_version == "vX"
            if cur is not None:
                remaining = cur[1] - ts
                longer = rc.ttl_s > cur[2] and ts + rc.ttl_s - cur[1] > SHARE * rc.ttl_s
                # Never re-emitted while an equal-or-stronger decision is in force, except to refresh it
                # or to hold it longer.
                assert strength(action) > cur[0] or (
                    strength(action) == cur[0] and (remaining <= SHARE * max(cur[2], rc.ttl_s) or longer)
                )
                assert strength(action) >= cur[0]
                if strength(action) == cur[0]:
                    assert d.expires_at > cur[1]  # a refresh never shortens
            said[(scope, key)] = (strength(action), d.expires_at, rc.ttl_s)
        else:
            # Silence only when something at least as strong is in force and not about to expire.
            assert cur is not None
            assert strength(action) <= cur[0]
            if strength(action) == cur[0]:
                assert cur[1] - ts > SHARE * min(cur[2], rc.ttl_s)
                assert not (rc.ttl_s > cur[2] and ts + rc.ttl_s - cur[1] > SHARE * rc.ttl_s)
        assert in_force(p, scope, key, ts) == (
            (scope, key) in said
            and said[(scope, key)][0] >= strength("throttle")
            and said[(scope, key)][1] > ts
        )


@settings(max_examples=100, deadline=None)
@given(st.lists(op, max_size=40))
def test_policy_is_deterministic(ops):
    def run() -> list[bytes]:
        p = Policy(CFG)
        ts = 1000.0
        out = []
        for kind, (scope, key), rule, dt in ops:
            ts += dt
            d = (
                p.allow(scope, key, ts, 60.0, "manual")
                if kind == "allow"
                else p.decide(scope, key, rule, ts, 0.5, {})
            )
            if d is not None:
                out.append(encode_decision(d))
        return out

    assert run() == run()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(scopes_keys, rules, st.floats(0.0, 5000.0)), max_size=40))
def test_allow_always_lifts(findings):
    p = Policy(CFG)
    ts = 0.0
    for (scope, key), rule, dt in findings:
        ts += dt
        p.decide(scope, key, rule, ts, 0.5, {})
    for scope, ks in KEYS.items():
        for key in ks:
            p.allow(scope, key, ts, 60.0, "manual")
            assert not in_force(p, scope, key, ts)
            d = p.decide(scope, key, "campaign", ts, 0.5, {})
            assert (d is None) == ((scope, key) in ALLOWLISTED)
