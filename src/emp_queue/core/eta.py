"""When a waiting job should start: its position, the workers that can run it, their pace.

The estimate is deliberately simple and says what it rests on: the jobs ahead are shared
among the matching workers that answer; idle ones start the first jobs now, busy ones free up
after half a mean run time on average, and each later round takes a mean run time (measured
over every completed job of the service, from the scripts' own totals).
Machines still booting and model loads are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StartEstimate:
    in_s: float
    basis: str


def estimate_start(
    position: int, idle_workers: int, busy_workers: int, mean_run_s: float | None, completed: int
) -> StartEstimate | None:
    """``None`` when no matching worker can take it (or nothing measured the pace yet and it
    must wait for a busy worker)."""
    workers = idle_workers + busy_workers
    if workers == 0:
        return None
    if position < idle_workers:
        return StartEstimate(0.0, f"{idle_workers} matching workers idle, {position} jobs ahead")
    if mean_run_s is None:
        return None
    rounds = (position - idle_workers) // workers
    in_s = mean_run_s / 2 + rounds * mean_run_s
    return StartEstimate(
        in_s,
        f"{position} jobs ahead for {workers} matching workers ({idle_workers} idle); mean run "
        f"time {mean_run_s:.1f} s over {completed} completed jobs of the service; machines "
        "still booting and model loads not counted",
    )
