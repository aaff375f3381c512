"""What a detection rule is: a name, a scope, the stage whose state it reads, its thresholds with their
defaults, its default action, and a method from that state to a finding.

A stage computes its state once per event (an account's rates, a network's awakened accounts, a
cluster's members) into a *view*, then asks each of its rules in turn. A rule answers with a
``Finding`` (the key it is about and a score) or ``None``; the stage hands a finding to the policy,
which turns it into a decision or says nothing new. A rule's ``evidence`` is asked only when the
policy will publish: a rule that fires on every request of an account already blocked must not build
a dict for each.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scope = Literal["account", "network", "asn", "payment"]
Stage = Literal["account", "population", "network", "cluster"]
Action = Literal["throttle", "block", "review"]
# The stages in the order an event meets them: its account's rules, the population model, then its
# network's and its clusters' rules.
STAGES: tuple[Stage, ...] = ("account", "population", "network", "cluster")


class Strict(BaseModel):
    """A section of the thresholds file: unknown keys are errors, values never change after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleConfig(Strict):
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


class NoThresholds(Strict):
    """The section of a rule that reads only thresholds owned by other sections."""


class Finding(NamedTuple):
    """A rule fired: about which key (of the rule's scope), how strongly (0..1), and for how long at least
    (``hold_s``: a decision that must outlast the pace of what it stops; the rule's TTL when longer)."""

    key: str
    score: float
    hold_s: float = 0.0


T = TypeVar("T", bound=Strict)


class Rule(Generic[T]):
    """One detection rule. Subclasses set the class attributes and implement ``find`` and ``evidence``.

    ``section`` names the thresholds section the rule owns, ``Thresholds`` its model (defaults beside
    the rule); rules of one family share both. ``order`` places the rule among the rules of its stage
    (a stage asks them in that order). ``conclusive`` (cluster rules): a finding ends the visit of the
    account's later cluster keys.
    """

    name: ClassVar[str]
    scope: ClassVar[Scope]
    stage: ClassVar[Stage]
    order: ClassVar[int]
    section: ClassVar[str]
    Thresholds: ClassVar[type[Strict]] = NoThresholds
    default: ClassVar[RuleConfig]
    summary: ClassVar[str]  # what fires it, one line: the README's rule table is made of these
    conclusive: ClassVar[bool] = False

    def __init__(self, thresholds: T):
        self.t = thresholds

    def find(self, view: Any) -> Finding | None:
        """The finding on this view of the stage's state, or None."""
        raise NotImplementedError

    def evidence(self, view: Any) -> dict[str, Any]:
        """The figures behind the finding on the same view, for the person who reviews the decision."""
        raise NotImplementedError
