"""The robustness matrix: attack rows that each take one signal away from a coordinated campaign, and
honest rows that each enlarge one look-alike of an attack signal, with the seeds to tune on and the
seeds held out.

Tune on TUNING_SEEDS only; report HELD_OUT_SEEDS, and never tune on them: a detector
judged on the seeds it was tuned on is judged on its own reflection. Every row runs
as ``row.generate(seed)`` (``traffic.generate(row.scenario, seed=seed)`` gives the
same: a row's duration and scale are its scenario's defaults).

>>> sorted({r.kind for r in MATRIX}), len({r.name for r in MATRIX}) == len(MATRIX)
(['attack', 'honest'], True)
>>> set(TUNING_SEEDS) & set(HELD_OUT_SEEDS)
set()
"""

from __future__ import annotations

from dataclasses import dataclass

from .background import LOOKALIKES
from .scenarios import SCENARIO_SPECS, SCENARIOS, generate
from .simulation import Simulation
from .variants import VARIANTS

TUNING_SEEDS = (1, 2, 3)
HELD_OUT_SEEDS = (101, 102, 103, 104, 105)


@dataclass(frozen=True)
class Row:
    """One row: its name, the scenario it runs, "attack" or "honest", what it holds, the signal it takes
    away (attack rows) or enlarges (honest rows), and the duration and honest-population scale it runs at."""

    name: str
    scenario: str
    kind: str
    description: str
    signal: str = ""
    duration_s: float = 3600.0
    scale: float = 1.0

    def generate(self, seed: int, **kwargs: object) -> Simulation:
        """The row's traffic for one seed (keyword arguments go to traffic.generate)."""
        return generate(self.scenario, seed=seed, **kwargs)  # type: ignore[arg-type]


def _row(name: str, scenario: str, kind: str, description: str, signal: str) -> Row:
    spec = SCENARIO_SPECS[scenario]
    hours = spec.duration_s / 3600.0
    window = f"{hours:g} h at scale {spec.scale:g}"
    return Row(name, scenario, kind, f"{description} ({window})", signal, spec.duration_s, spec.scale)


# attack rows: (row name, scenario); what each takes away is its variant's
_ATTACKS = (
    ("base", "campaign"),
    ("old_accounts", "campaign_aged"),
    ("low_ratio", "campaign_low_ratio"),
    ("own_cards", "campaign_own_cards"),
    ("own_exits", "campaign_own_exits"),
    ("no_fingerprints", "campaign_no_fp"),
    ("dataset_prompts", "campaign_dataset"),
    ("slow_pace", "campaign_slow"),
    ("modest_burst", "stolen_modest"),
    ("glacial_shared_cards", "glacial_shared_cards"),
    ("glacial_own_cards", "glacial_own_cards"),
    ("random_adversary", "adversary"),
)

MATRIX: tuple[Row, ...] = (
    *(
        _row(
            name, scenario, "attack", VARIANTS[scenario].description, f"removes: {VARIANTS[scenario].removes}"
        )
        for name, scenario in _ATTACKS
    ),
    *(
        _row(name, f"honest_{name}", "honest", f"{name} x5 over the background, no attack", look.resembles)
        for name, look in LOOKALIKES.items()
    ),
    _row(
        "background",
        "benign",
        "honest",
        "the honest background alone, every look-alike at its usual size",
        "",
    ),
)

# The scenarios of the previous simulator (one attacker each, the dev hour's kind): the detection must
# not regress on them while it learns the adversary's range.
IN_DISTRIBUTION: tuple[Row, ...] = tuple(
    _row(f"in-distribution {name}", name, "attack", SCENARIOS[name], "")
    for name in ("mixed", "hydra", "hydra_churn", "slow_drip", "compromised", "burst", "ipv6", "no_fp", "surge")
)

# What ``make eval`` runs: the robustness matrix, then the in-distribution rows.
EVAL_ROWS: tuple[Row, ...] = MATRIX + IN_DISTRIBUTION
