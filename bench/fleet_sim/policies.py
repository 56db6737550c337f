"""The scheduling policies the simulator compares on one trace.

A policy says what the jobs ask for, what the workers report and whether idle machines
place models ahead of demand; the choice of the next job is always the real ``claim.lua``
(what it weighs — affinity, fair share — is the claim's own behaviour, not the simulator's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.fleet_sim.trace import TraceJob


@dataclass(frozen=True)
class Policy:
    key: str
    label: str
    reports_models: bool = False
    """Jobs name their model as a requirement and workers report what they hold, as it
    changes: what affinity in the claim reads."""
    placement: bool = False
    """Idle machines pre-load the model with the largest unmet demand (``model_demand``)."""
    affinity_window_s: float = 0.0
    """The claim's affinity window (simulated s; 0: off)."""
    affinity_hold_s: float = 0.0
    """The claim's affinity hold (simulated s; 0: off): a job whose model a free worker has
    loaded is left to it this long after submission."""
    affinity_busy_hold_s: float = 0.0
    """The same while only busy workers have the model loaded (simulated s; 0: off)."""
    fair_share_window_s: float = 0.0
    """The claim's fair-share window (simulated s; 0: off)."""
    fair_share_half_life_s: float = 60.0

    def requirements(self, job: TraceJob) -> dict[str, Any]:
        return {"models": [job.model]} if self.reports_models else {}


AFFINITY_WINDOW_S = 120.0
AFFINITY_HOLD_S = 30.0
AFFINITY_BUSY_HOLD_S = 30.0
FAIR_SHARE_WINDOW_S = 600.0

POLICIES = (
    Policy("a", "capability matching only (the claim before #16)"),
    Policy(
        "b",
        "+ affinity",
        reports_models=True,
        affinity_window_s=AFFINITY_WINDOW_S,
        affinity_hold_s=AFFINITY_HOLD_S,
        affinity_busy_hold_s=AFFINITY_BUSY_HOLD_S,
    ),
    Policy(
        "c",
        "+ affinity + predictive placement",
        reports_models=True,
        placement=True,
        affinity_window_s=AFFINITY_WINDOW_S,
        affinity_hold_s=AFFINITY_HOLD_S,
        affinity_busy_hold_s=AFFINITY_BUSY_HOLD_S,
    ),
    Policy(
        "d",
        "+ fair share (#15)",
        reports_models=True,
        placement=True,
        affinity_window_s=AFFINITY_WINDOW_S,
        affinity_hold_s=AFFINITY_HOLD_S,
        affinity_busy_hold_s=AFFINITY_BUSY_HOLD_S,
        fair_share_window_s=FAIR_SHARE_WINDOW_S,
    ),
)
