"""Traffic simulator: labelled, seeded scenarios of honest and abusive LLM-API requests.

>>> import traffic
>>> sim = traffic.generate("benign", seed=1, duration_s=300.0, scale=0.01)
>>> evs = list(sim.events())
>>> all(a["ts"] <= b["ts"] for a, b in zip(evs, evs[1:]))
True
"""

from .scenarios import SCENARIOS, generate
from .simulation import Simulation

__all__ = ["SCENARIOS", "Simulation", "generate"]
