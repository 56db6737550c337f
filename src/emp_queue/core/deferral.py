"""Rules that leave a waiting job to other workers for a while: the Python twin of
``deferred_until`` in ``lua/matching.lua``, which ``claim.lua`` calls in its eligibility check.

``deferred_until(job, worker, now_ms)`` is 0, or the time (ms) from which the claiming worker
may take the job; until then the job is not eligible for it (:mod:`emp_queue.core.fair_share`
step 1) and other workers may take it. Every rule is bounded by a time, so nothing starves.

Rules:

* **affinity hold** (decision 0046): a job whose models the claiming worker does not all
  have in VRAM (``affinity`` tier > 0), while another *ready* worker — one whose last claim
  left it wanting more jobs — has them all loaded and can run the job (its pool may take
  it now), is left to that worker until ``hold_ms`` after the job's order time (its submit
  time, the low part of its score). While any other worker that can run it, free or busy,
  has them all loaded (``loaded_anywhere``), it is left until ``busy_hold_ms`` after its
  order time (a busy worker may be free soon; the claim cannot tell when). The later of the
  two applies.
* **pool fallback** (decision 0045, :mod:`emp_queue.core.pools`): a job of another pool is
  left to the workers of its own pool (and of the pools before the claiming worker's in its
  fallback order) until ``pool_wait_ms`` after its order time; ``inf``: for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emp_queue.core.fair_share import WaitingJob

__all__ = ["ORDER_SCALE", "WorkerContext", "deferred_until", "order_time_ms"]

ORDER_SCALE = 2**42
"""A score is ``priority band * 2**42 + order time (ms)`` (docs/redis.md)."""


@dataclass(frozen=True)
class WorkerContext:
    """What the deferral rules know about the claiming worker."""

    hold_ms: int = 0
    """The affinity hold (``EMP_AFFINITY_HOLD_S``); 0: no hold."""
    busy_hold_ms: int = 0
    """The hold for busy owners (``EMP_AFFINITY_BUSY_HOLD_S``); 0: none."""


def order_time_ms(score: int) -> int:
    return score % ORDER_SCALE


def deferred_until(job: WaitingJob, worker: WorkerContext, now_ms: int) -> float:
    """0 when ``worker`` may take ``job`` now, else the time (ms) from which it may."""
    until: float = 0
    if worker.hold_ms > 0 and job.affinity > 0 and job.loaded_elsewhere:
        hold_end = order_time_ms(job.score) + worker.hold_ms
        if hold_end > now_ms:
            until = max(until, hold_end)
    if worker.busy_hold_ms > 0 and job.affinity > 0 and job.loaded_anywhere:
        busy_end = order_time_ms(job.score) + worker.busy_hold_ms
        if busy_end > now_ms:
            until = max(until, busy_end)
    if job.pool_wait_ms:
        pool_end = order_time_ms(job.score) + job.pool_wait_ms
        if pool_end > now_ms:
            until = max(until, pool_end)
    return until
