"""Typed thresholds for every detector and the policy, validated at load.

The defaults are the shipped, safe configuration (``deploy/config/thresholds.yaml``
restates them for SREs). Errors name the field and the value, e.g.
``policy.network.min_accounts: Input should be greater than or equal to 1 (got 0)``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Action = Literal["throttle", "block", "review"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventTimeConfig(_Strict):
    """How event time is trusted: bounded lateness and future skew."""

    max_future_s: float = Field(300.0, gt=0, description="events further ahead of the clock are rejected")
    # An hour: a worker catching up reads its input partitions out of step by many minutes.
    max_lateness_s: float = Field(
        3600.0, gt=0, description="events older than this behind their account's latest event: DLQ 'late'")
    dedupe_ids: int = Field(
        100_000, ge=1000, description="event ids each account partition remembers, to count a redelivery once")


class AccountConfig(_Strict):
    """Per-account rates against the account's own baseline."""

    young_age_s: float = Field(3 * 86400.0, gt=0, description="accounts younger than this form the young cohort")
    old_age_s: float = Field(30 * 86400.0, gt=0, description="accounts older than this may be 'awakened' keys")
    burst_fast_rps: float = Field(12.0, gt=0, description="2-second rate that is a burst at once")
    burst_episode_rps: float = Field(9.0, gt=0, description="rate since waking up that is a burst")
    burst_episode_min_events: int = Field(30, ge=5, description="requests since waking up before that counts")
    burst_min_rps: float = Field(8.5, gt=0, description="10-second rate that is a burst when sustained")
    burst_ratio: float = Field(8.0, gt=1, description="short rate over the account's own baseline")
    burst_baseline_floor_rps: float = Field(0.1, gt=0)
    burst_min_observed_s: float = Field(300.0, ge=0, description="how long an account must have been watched")
    burst_block_ratio: float = Field(30.0, gt=1, description="beyond this ratio a burst is blocked, not throttled")
    harvest_ratio: float = Field(2.0, gt=0, description="output/input tokens above which answers are harvested")
    rate_headroom: dict[str, float] = Field(
        default_factory=dict,
        description="per-account or per-org_id (tier) factor on every burst threshold, e.g. {acct_big: 5}",
    )
    idle_expiry_s: float = Field(6 * 3600.0, gt=0, description="state of an account idle this long is dropped")
    max_accounts: int = Field(2_000_000, ge=1000, description="cap on tracked accounts (oldest idle evicted)")

    @field_validator("rate_headroom")
    @classmethod
    def _positive_headroom(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if not f > 0}
        if bad:
            raise ValueError(f"headroom factors must be > 0, got {bad}")
        return v


class ClusterConfig(_Strict):
    """Clusters of young accounts acting alike (shared payment, near prompts, same client + sign-up time)."""

    window_s: float = Field(1800.0, gt=0, description="members count while seen within this window")
    min_accounts: int = Field(6, ge=2, description="distinct young accounts in one cluster")
    min_networks: int = Field(4, ge=1, description="distinct networks those accounts came from")
    max_network_share: float = Field(0.5, gt=0, le=1, description="most members one network may hold")
    min_harvest_share: float = Field(0.5, ge=0, le=1, description="share of members harvesting long answers")
    crowd_min_accounts: int = Field(5, ge=2, description="young accounts on one network that make a crowd")
    signup_bucket_s: float = Field(6 * 3600.0, gt=0, description="sign-up time bucket of the client+sign-up cluster")
    signup_min_accounts: int = Field(10, ge=2)
    signup_min_harvest_share: float = Field(0.7, ge=0, le=1)
    prompt_bands: int = Field(4, ge=1, le=8, description="LSH bands over the 64-bit prompt SimHash")
    max_members_tracked: int = Field(64, ge=8)
    max_clusters: int = Field(2_000_000, ge=1000)


class ProxyConfig(_Strict):
    """Young accounts harvesting through rotating exits, without any shared fingerprint."""

    max_age_s: float = Field(86400.0, gt=0, description="only accounts this fresh: campaigns use new ones")
    min_harvest_ratio: float = Field(2.5, gt=0, description="output/input tokens, higher than the cohort's")
    min_events: int = Field(4, ge=2)
    min_networks: int = Field(3, ge=2)
    min_switch_share: float = Field(0.6, ge=0, le=1, description="share of requests from another network")


class NetworkConfig(_Strict):
    """Per-network (/24, /48) fan-out of awakened accounts: compromised keys."""

    ipv4_prefix: int = Field(24, ge=8, le=32)
    ipv6_prefix: int = Field(48, ge=16, le=128)
    window_s: float = Field(300.0, gt=0)
    awakened_min_rps: float = Field(0.4, gt=0, description="10-second rate of an awakened account")
    min_accounts: int = Field(5, ge=1, description="awakened accounts on one network")
    takeover_share: float = Field(0.9, gt=0, le=1, description="share of a network's events from flagged accounts")
    takeover_min_accounts: int = Field(10, ge=1)
    max_networks: int = Field(1_000_000, ge=1000)
    ip_cache_size: int = Field(100_000, ge=1000, description="addresses whose network is remembered, per stage")


class RuleConfig(_Strict):
    """What one rule does when it fires."""

    action: Action
    ttl_s: float = Field(gt=0)
    limit_rps: float | None = Field(None, gt=0)
    shadow: bool = Field(False, description="computed and published as review, never enforced")

    @model_validator(mode="after")
    def _throttle_has_limit(self) -> RuleConfig:
        if self.action == "throttle" and self.limit_rps is None:
            raise ValueError("a throttle needs limit_rps")
        return self


def _default_rules() -> dict[str, RuleConfig]:
    return {
        "account_burst": RuleConfig(action="throttle", ttl_s=600.0, limit_rps=0.2),
        "account_burst_extreme": RuleConfig(action="block", ttl_s=900.0),
        "campaign_cluster": RuleConfig(action="block", ttl_s=3600.0),
        "cluster_review": RuleConfig(action="review", ttl_s=3600.0),
        "signup_cluster": RuleConfig(action="block", ttl_s=3600.0),
        "proxy_harvester": RuleConfig(action="block", ttl_s=3600.0),
        "network_fanout": RuleConfig(action="block", ttl_s=1800.0),
        "network_takeover": RuleConfig(action="block", ttl_s=900.0),
        "population_outlier": RuleConfig(action="review", ttl_s=3600.0),
    }


class PolicyConfig(_Strict):
    """Rules to actions, allowlists and when a decision may be re-emitted."""

    rules: dict[str, RuleConfig] = Field(default_factory=_default_rules)
    refresh_before_expiry_share: float = Field(
        0.2, ge=0, lt=1, description="re-emit an active decision when this share of its TTL remains"
    )
    allow_accounts: frozenset[str] = frozenset()
    allow_networks: frozenset[str] = frozenset()
    allow_asns: frozenset[int] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _rules_over_defaults(cls, data: Any) -> Any:
        """A file names only the rules it changes; the others keep their defaults."""
        if isinstance(data, dict) and isinstance(data.get("rules"), dict):
            merged: dict[str, Any] = {k: v.model_dump() for k, v in _default_rules().items()}
            for name, rule in data["rules"].items():
                merged[name] = {**merged.get(name, {}), **rule} if isinstance(rule, dict) else rule
            data = {**data, "rules": merged}
        return data

    @field_validator("allow_networks")
    @classmethod
    def _canonical_networks(cls, nets: frozenset[str]) -> frozenset[str]:
        out = set()
        for n in nets:
            try:
                out.add(str(ipaddress.ip_network(n, strict=True)))
            except ValueError as exc:
                raise ValueError(f"{n!r} is not a network in CIDR form ({exc})") from None
        return frozenset(out)

    @model_validator(mode="after")
    def _known_rules(self) -> PolicyConfig:
        unknown = set(self.rules) - set(_default_rules())
        if unknown:
            raise ValueError(f"unknown rules {sorted(unknown)}; known: {sorted(_default_rules())}")
        return self


class PopulationConfig(_Strict):
    """River HalfSpaceTrees over scaled per-account features, shared by all accounts."""

    enabled: bool = True
    n_trees: int = Field(10, ge=1, le=50)
    height: int = Field(8, ge=2, le=12)
    window_size: int = Field(250, ge=10)
    review_score: float = Field(0.97, gt=0, le=1)
    score_every_s: float = Field(60.0, gt=0, description="an account is scored at most this often")
    warmup_samples: int = Field(2000, ge=0)
    seed: int = 42


class DetectorConfig(_Strict):
    """All thresholds of ratehound; one file, one version."""

    version: str = "default"
    event_time: EventTimeConfig = EventTimeConfig()
    account: AccountConfig = AccountConfig()
    cluster: ClusterConfig = ClusterConfig()
    proxy: ProxyConfig = ProxyConfig()
    network: NetworkConfig = NetworkConfig()
    population: PopulationConfig = PopulationConfig()
    policy: PolicyConfig = PolicyConfig()


class ConfigError(ValueError):
    """A thresholds file that cannot be used; the message names field and value."""


def parse_config(doc: dict[str, Any] | None) -> DetectorConfig:
    """Validate a thresholds document (already parsed YAML/JSON).

    >>> parse_config({"network": {"min_accounts": 0}})
    Traceback (most recent call last):
    ...
    detectors.config.ConfigError: network.min_accounts: Input should be greater than or equal to 1 (got 0)
    >>> parse_config({"version": "v7"}).cluster.min_accounts
    6
    """
    try:
        return DetectorConfig.model_validate(doc or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            lines.append(f"{loc or '<root>'}: {err['msg']}{got}")
        raise ConfigError("; ".join(lines)) from None


def load_config(path: str | Path | None) -> DetectorConfig:
    """Read and validate a YAML thresholds file; ``None`` gives the defaults."""
    if path is None:
        return DetectorConfig()
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if doc is not None and not isinstance(doc, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(doc).__name__}")
    return parse_config(doc)
