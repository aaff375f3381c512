"""Tiny streams for the rules' doctests: a stage with its policy and an empty decision list, and
observations with every field defaulted but those an example is about."""

from __future__ import annotations

import zlib
from typing import Any

from detectors.account_stage import AccountStage
from detectors.config import DetectorConfig, parse_config
from detectors.group_stage import GroupStage
from detectors.observation import Observation
from detectors.policy import Decision, Policy
from detectors.population_stage import PopulationStage


def account_stage(doc: dict[str, Any] | None = None) -> tuple[AccountStage, list[Decision]]:
    """An account stage on the default thresholds (or ``doc``'s), and the list its decisions go to."""
    cfg = parse_config(doc) if doc else DetectorConfig()
    return AccountStage(cfg, Policy(cfg.policy)), []


def group_stage(doc: dict[str, Any] | None = None) -> tuple[GroupStage, list[Decision]]:
    cfg = parse_config(doc) if doc else DetectorConfig()
    return GroupStage(cfg, Policy(cfg.policy)), []


def population_stage(doc: dict[str, Any] | None = None) -> tuple[PopulationStage, list[Decision]]:
    cfg = parse_config(doc) if doc else DetectorConfig()
    return PopulationStage(cfg, Policy(cfg.policy)), []


def observation(ts: float, account: str, net: str = "198.51.100.0/24", **kw: Any) -> Observation:
    """An observation of an old, quiet account's ordinary request, but for what ``kw`` says.

    >>> observation(1.0, "a", young=True).young
    True
    """
    fields: dict[str, Any] = {"net_id": zlib.crc32(net.encode()), "asn": None, "young": False, "harvest": False,
                              "awakened_rps": 0.0, "out_tok": 300, "in_tok": 200, "created": 0.0,
                              "user_agent": None, "prompt_fp": None, "payment_fp": None, "harvest_ratio": 1.2,
                              "networks_used": 1}
    fields.update(kw)
    return Observation(ts=ts, account=account, net=net, **fields)
