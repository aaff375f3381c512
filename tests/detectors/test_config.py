"""Tests for detectors/config.py: typed thresholds, validated at load, errors that name field and value."""

from __future__ import annotations

import pytest
import yaml

from detectors.config import (
    AccountConfig,
    ClusterConfig,
    ConfigError,
    DetectorConfig,
    NetworkConfig,
    PolicyConfig,
    RuleConfig,
    load_config,
    parse_config,
)
from detectors.rules import RULE_NAMES

KNOWN_RULES = set(RULE_NAMES)


def test_defaults_are_valid_and_safe():
    cfg = DetectorConfig()
    assert parse_config(None) == cfg == parse_config({}) == load_config(None)
    assert set(cfg.policy.rules) == KNOWN_RULES
    for name, rc in cfg.policy.rules.items():
        assert rc.ttl_s > 0, name
        assert not rc.shadow, name
        if rc.action == "throttle":
            assert rc.limit_rps and rc.limit_rps > 0, name
    assert cfg.policy.allow_accounts == frozenset()
    # Round trip: the defaults written out validate back to the same object.
    assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_config_is_frozen():
    cfg = DetectorConfig()
    with pytest.raises(Exception):  # noqa: B017  pydantic raises its own ValidationError
        cfg.network.window_s = 1.0  # type: ignore[misc]


def test_override_keeps_other_defaults():
    cfg = parse_config({"version": "v7", "fanout": {"min_accounts": 3}})
    assert cfg.version == "v7"
    assert cfg.section("fanout").min_accounts == 3
    assert cfg.section("fanout").takeover_min_accounts == DetectorConfig().section("fanout").takeover_min_accounts
    assert cfg.network == NetworkConfig()
    assert cfg.cluster == ClusterConfig()


@pytest.mark.parametrize(
    "doc, path, value",
    [
        ({"fanout": {"min_accounts": 0}}, "fanout.min_accounts", "0"),
        ({"network": {"ipv4_prefix": 33}}, "network.ipv4_prefix", "33"),
        ({"network": {"ipv6_prefix": 8}}, "network.ipv6_prefix", "8"),
        ({"burst": {"ratio": 1.0}}, "burst.ratio", "1.0"),
        ({"account": {"max_accounts": 10}}, "account.max_accounts", "10"),
        ({"account": {"young_age_s": -1}}, "account.young_age_s", "-1"),
        ({"cluster": {"max_network_share": 1.5}}, "cluster.max_network_share", "1.5"),
        ({"cluster": {"prompt_bands": 0}}, "cluster.prompt_bands", "0"),
        ({"cluster": {"min_accounts": "many"}}, "cluster.min_accounts", "'many'"),
        ({"event_time": {"max_lateness_s": 0}}, "event_time.max_lateness_s", "0"),
        ({"population": {"review_score": 2}}, "population.review_score", "2"),
        ({"policy": {"refresh_before_expiry_share": 1.0}}, "policy.refresh_before_expiry_share", "1.0"),
        (
            {"policy": {"rules": {"campaign": {"action": "nuke", "ttl_s": 10}}}},
            "policy.rules.campaign.action",
            "'nuke'",
        ),
        (
            {"policy": {"rules": {"campaign": {"action": "block", "ttl_s": 0}}}},
            "policy.rules.campaign.ttl_s",
            "0",
        ),
        ({"version": 5}, "version", "5"),
    ],
)
def test_bad_values_name_field_and_value(doc, path, value):
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    msg = str(exc.value)
    assert msg.startswith(path + ":") or f"; {path}:" in msg
    assert f"(got {value})" in msg


def test_all_errors_are_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        parse_config({"fanout": {"min_accounts": 0}, "network": {"window_s": -1}, "cluster": {"min_networks": 0}})
    msg = str(exc.value)
    for path in ("fanout.min_accounts", "network.window_s", "cluster.min_networks"):
        assert path in msg


@pytest.mark.parametrize(
    "doc, path",
    [
        ({"netwrok": {}}, "netwrok"),
        ({"network": {"min_acounts": 3}}, "network.min_acounts"),
        ({"fanout": {"min_acounts": 3}}, "fanout.min_acounts"),
        (
            {"policy": {"rules": {"account_burst": {"action": "block", "ttl_s": 5, "colour": 1}}}},
            "policy.rules.account_burst.colour",
        ),
    ],
)
def test_unknown_keys_are_rejected(doc, path):
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        parse_config(doc)


def test_throttle_without_limit_is_rejected():
    with pytest.raises(ConfigError, match=r"policy\.rules\.campaign.*limit_rps"):
        parse_config({"policy": {"rules": {"campaign": {"action": "throttle", "ttl_s": 60}}}})
    # a rule that already has a limit keeps it when only its action changes back to throttle
    assert parse_config({"policy": {"rules": {"account_burst": {"action": "throttle"}}}}).policy.rules[
        "account_burst"].limit_rps == 0.2
    with pytest.raises(ValueError, match="limit_rps"):
        RuleConfig(action="throttle", ttl_s=60.0)
    assert RuleConfig(action="throttle", ttl_s=60.0, limit_rps=0.5).limit_rps == 0.5


def test_unknown_rule_names_are_rejected():
    with pytest.raises(ConfigError) as exc:
        parse_config({"policy": {"rules": {"acount_burst": {"action": "block", "ttl_s": 60}}}})
    assert "unknown rules" in str(exc.value) and "acount_burst" in str(exc.value)
    assert str(exc.value).startswith("policy")


def test_allowlists_parse_from_lists():
    cfg = parse_config(
        {"policy": {"allow_accounts": ["a", "b"], "allow_asns": [64500], "allow_networks": ["10.0.0.0/24"]}}
    )
    assert cfg.policy.allow_accounts == frozenset({"a", "b"})
    assert cfg.policy.allow_asns == frozenset({64500})
    assert cfg.policy.allow_networks == frozenset({"10.0.0.0/24"})


def test_overriding_one_rule_keeps_the_other_rules():
    cfg = parse_config(
        {"policy": {"rules": {"account_burst": {"action": "throttle", "ttl_s": 300, "limit_rps": 1}}}}
    )
    assert cfg.policy.rules["account_burst"].ttl_s == 300
    assert set(cfg.policy.rules) == KNOWN_RULES


@pytest.mark.parametrize("net", ["10.0.0.0/33", "10.0.0.5/24", "not-a-network"])
def test_allow_networks_must_be_canonical_cidr(net):
    with pytest.raises(ConfigError, match="allow_networks"):
        parse_config({"policy": {"allow_networks": [net]}})


def test_sub_configs_validate_on_their_own():
    assert AccountConfig(max_accounts=1000).max_accounts == 1000
    with pytest.raises(ValueError):
        AccountConfig(max_accounts=999)
    with pytest.raises(ValueError):
        PolicyConfig(rules={"bogus": RuleConfig(action="block", ttl_s=1.0)})


# --- files ----------------------------------------------------------------------------------------


def test_load_config_from_yaml(tmp_path):
    p = tmp_path / "thresholds.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "version": "2026-11-23",
                "network": {"ipv6_prefix": 56},
                "fanout": {"min_accounts": 7},
                "policy": {
                    "allow_accounts": ["vip"],
                    "rules": {name: {"action": "review", "ttl_s": 60.0} for name in sorted(KNOWN_RULES)},
                },
            }
        )
    )
    cfg = load_config(p)
    assert cfg.version == "2026-11-23"
    assert cfg.section("fanout").min_accounts == 7 and cfg.network.ipv6_prefix == 56
    assert cfg.policy.allow_accounts == frozenset({"vip"})
    assert cfg.policy.rules["campaign"].action == "review"
    assert load_config(str(p)) == cfg


def test_load_config_empty_file_gives_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert load_config(p) == DetectorConfig()


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("42\n", "int"), ("just text\n", "str")])
def test_load_config_non_mapping(tmp_path, text, kind):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=f"top level must be a mapping, got {kind}"):
        load_config(p)


def test_load_config_bad_value_in_file_names_the_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("fanout:\n  min_accounts: 0\n")
    with pytest.raises(ConfigError, match=r"fanout\.min_accounts: .*\(got 0\)"):
        load_config(p)


def test_load_config_missing_file_and_broken_yaml(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("network: {min_accounts: [\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(p)
