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

    def requirements(self, job: TraceJob) -> dict[str, Any]:
        return {"models": [job.model]} if self.reports_models else {}


POLICIES = (
    Policy("a", "capability matching only (today's claim)"),
    Policy("b", "+ affinity", reports_models=True),
    Policy("c", "+ affinity + predictive placement", reports_models=True, placement=True),
)
