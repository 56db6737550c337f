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
    pools: bool = False
    """Machines belong to pools (``POOL_OF_MACHINE``) and each job to the pool of its kind,
    with #15's default fallback delays (scaled); off: pools are off in the claim."""

    def requirements(self, job: TraceJob) -> dict[str, Any]:
        requirements: dict[str, Any] = {"models": [job.model]} if self.reports_models else {}
        if self.pools:
            requirements["pool"] = job.kind
        return requirements

    def pool_of(self, machine_index: int) -> str | None:
        """Pools sized to the GPU time of each kind (fast 2, standard 4, heavy 6 of 12)."""
        if not self.pools:
            return None
        return POOL_OF_MACHINE[machine_index % len(POOL_OF_MACHINE)]


AFFINITY_WINDOW_S = 120.0
AFFINITY_HOLD_S = 30.0
AFFINITY_BUSY_HOLD_S = 30.0
FAIR_SHARE_WINDOW_S = 600.0
POOL_OF_MACHINE = ("fast", "fast") + ("standard",) * 4 + ("heavy",) * 6

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
        "+ pools and fair share (#15)",
        reports_models=True,
        placement=True,
        affinity_window_s=AFFINITY_WINDOW_S,
        affinity_hold_s=AFFINITY_HOLD_S,
        affinity_busy_hold_s=AFFINITY_BUSY_HOLD_S,
        fair_share_window_s=FAIR_SHARE_WINDOW_S,
        pools=True,
    ),
)
