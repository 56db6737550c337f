"""Whose job next: the fair-share rule in Python, the reference ``claim.lua`` must agree with.

At the worker's claim, among the waiting jobs it can run (``matching.py``):

1. a job is *eligible* when its customer is under its running caps (overall and for the job's
   service) and it is not deferred for this worker (:mod:`emp_queue.core.deferral`: the
   affinity hold, pool fallback) — the jobs of one class (same customer and requirements) are
   taken in plain order, so while a class's first waiting job is deferred its later ones wait;
2. ``F`` is the first eligible job in plain order: higher priority first, then submit order;
3. the *window* holds the eligible jobs of ``F``'s priority whose order time is at most
   ``window_ms`` after ``F``'s;
4. of the window, the job of the customer with the lowest share goes, its customer's first;
   ties: the job whose models the worker holds best (``affinity``: 0 loaded, 1 installed,
   2 fetchable — :func:`emp_queue.core.matching.model_tier`), then plain order.

Each rule has its window: beyond ``window_ms`` a job's share counts as infinite, beyond
``affinity_window_ms`` its tier counts as the worst; a window of 0 turns its rule off.

A customer's share is ``(running jobs + recent claims) / weight``; recent claims halve every
half-life. Taking a job adds one running job and one recent claim to its customer.
``tests/integration/test_fair_share_agreement.py`` runs random queues through this module
and through ``claim.lua``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import inf

from emp_queue.core.customers import CustomerPolicy, decayed_usage
from emp_queue.core.deferral import WorkerContext, deferred_until

__all__ = ["CustomerState", "WaitingJob", "claim_order", "decayed_usage", "next_job"]

WORST_TIER = 2
PRIORITY_SCALE = 2**42
"""Width of one priority band of the score (see docs/redis.md, "Score of a waiting job")."""


@dataclass(frozen=True)
class WaitingJob:
    """A waiting job as the claim sees it: ``member`` is ``<12-digit order seq>|<id>``."""

    job_id: str
    customer: str
    service: str
    score: int
    member: str
    affinity: int = 0
    loaded_elsewhere: bool = False
    """Another ready worker that can run it has all its models loaded (the affinity hold)."""
    loaded_anywhere: bool = False
    """Another worker that can run it, free or busy, has all its models loaded."""
    job_class: str = ""
    """The job's class (customer and requirements); "" for a class of its own."""
    pool_wait_ms: float = 0
    """How long after its order time the claiming worker's pool may take it
    (:func:`emp_queue.core.pools.pool_wait_ms`; ``inf``: never)."""

    @property
    def plain_order(self) -> tuple[int, str]:
        return self.score, self.member


@dataclass
class CustomerState:
    """One customer at the moment of a claim: its policy, running jobs and recent claims."""

    policy: CustomerPolicy = field(default_factory=CustomerPolicy)
    running: int = 0
    running_by_service: dict[str, int] = field(default_factory=dict)
    usage: float = 0.0

    def share(self) -> float:
        return (self.running + self.usage) / self.policy.weight

    def capped(self, service: str) -> bool:
        service_cap = self.policy.max_running_by_service.get(service)
        if service_cap is not None and self.running_by_service.get(service, 0) >= service_cap:
            return True
        return self.policy.max_running is not None and self.running >= self.policy.max_running

    def took(self, service: str) -> None:
        self.running += 1
        self.running_by_service[service] = self.running_by_service.get(service, 0) + 1
        self.usage += 1


def next_job(
    waiting: Sequence[WaitingJob],
    customers: Mapping[str, CustomerState],
    window_ms: int,
    affinity_window_ms: int = 0,
    *,
    worker: WorkerContext | None = None,
    now_ms: int = 0,
) -> WaitingJob | None:
    """The job a claim takes next (steps 1-4 of the module's rule), or None."""
    context = worker or WorkerContext()
    deferred_classes = {
        job.job_class or job.job_id: deferred_until(job, context, now_ms) > now_ms
        for job in sorted(waiting, key=lambda job: job.plain_order, reverse=True)
    }  # each class's first job in plain order is written last: it decides
    eligible = [
        job
        for job in waiting
        if not _state(customers, job.customer).capped(job.service)
        and not deferred_classes[job.job_class or job.job_id]
    ]
    if not eligible:
        return None
    first = min(eligible, key=lambda job: job.plain_order)
    if window_ms <= 0 and affinity_window_ms <= 0:  # fair share and affinity off
        return first
    band_end = (first.score // PRIORITY_SCALE + 1) * PRIORITY_SCALE - 1
    fair_limit = min(first.score + window_ms, band_end)
    affinity_limit = min(first.score + affinity_window_ms, band_end)
    window = [job for job in eligible if job.score <= max(fair_limit, affinity_limit)]

    def order(job: WaitingJob) -> tuple[float, int, tuple[int, str]]:
        share = 0.0
        if window_ms > 0:
            share = _state(customers, job.customer).share() if job.score <= fair_limit else inf
        near = affinity_window_ms > 0 and job.score <= affinity_limit
        return share, job.affinity if near else WORST_TIER, job.plain_order

    return min(window, key=order)


def claim_order(
    waiting: Sequence[WaitingJob],
    customers: Mapping[str, CustomerState],
    *,
    count: int,
    window_ms: int,
    affinity_window_ms: int = 0,
    worker: WorkerContext | None = None,
    now_ms: int = 0,
) -> list[str]:
    """The ids one claim of up to ``count`` jobs takes, in order (``customers`` is updated)."""
    states = dict(customers)
    left = list(waiting)
    taken: list[str] = []
    while len(taken) < count:
        job = next_job(left, states, window_ms, affinity_window_ms, worker=worker, now_ms=now_ms)
        if job is None:
            break
        left.remove(job)
        states.setdefault(job.customer, CustomerState()).took(job.service)
        taken.append(job.job_id)
    return taken


def _state(customers: Mapping[str, CustomerState], customer: str) -> CustomerState:
    return customers.get(customer) or CustomerState()
