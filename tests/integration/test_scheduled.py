"""Scheduled jobs: run_at / delay_s keep a job out of every claim until its time."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.models import ClaimedJob

SIM = WorkerCapabilities(services=["sim"])


async def claim_within(job_queue: JobQueue, worker_id: str, within_s: float) -> list[ClaimedJob]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        claimed = await job_queue.claim(worker_id)
        if claimed:
            return claimed
        await asyncio.sleep(0.05)
    return []


async def test_delayed_job_waits_as_scheduled_then_runs(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim", delay_s=1.0))

    assert job.status is JobStatus.SCHEDULED
    assert job.not_before is not None
    assert job.not_before >= job.created_at + 1000
    assert await job_queue.claim("w1") == []
    assert (await job_queue.get(job.id)).status is JobStatus.SCHEDULED

    [claimed] = await claim_within(job_queue, "w1", within_s=20)
    assert claimed.job.id == job.id
    now_ms = int(time.time() * 1000)
    assert now_ms >= job.not_before - 50  # clocks of this host and Redis agree closely


async def test_run_at_in_the_past_is_claimable_at_once(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim", run_at=1_000))

    assert job.status is JobStatus.PENDING
    [claimed] = await job_queue.claim("w1")
    assert claimed.job.id == job.id


async def test_scheduled_job_can_be_cancelled_and_never_runs(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    run_at = int(time.time() * 1000) + 600
    job = await job_queue.submit(JobSpec(service_required="sim", run_at=run_at))
    assert job.status is JobStatus.SCHEDULED
    assert job.not_before == run_at

    cancelled = await job_queue.cancel(job.id, reason="not needed")
    assert cancelled.status is JobStatus.CANCELLED

    await asyncio.sleep(max(0.0, run_at / 1000 - time.time()) + 0.3)
    assert await job_queue.claim("w1") == []
    assert (await job_queue.get(job.id)).status is JobStatus.CANCELLED


async def test_due_scheduled_job_queues_by_its_run_time(job_queue: JobQueue) -> None:
    """A job scheduled for later takes its place at its run time, behind jobs submitted
    between its submission and that time."""
    await job_queue.register_worker("w1", SIM)
    later = await job_queue.submit(JobSpec(service_required="sim", delay_s=0.5))
    await asyncio.sleep(0.6)
    now = await job_queue.submit(JobSpec(service_required="sim"))

    # `later` was due first (0.5 s), `now` submitted after that: `later` goes first.
    first = await claim_within(job_queue, "w1", within_s=20)
    assert [c.job.id for c in first] == [later.id]
    [second] = await job_queue.claim("w1")
    assert second.job.id == now.id


async def test_the_stats_count_scheduled_jobs(job_queue: JobQueue) -> None:
    await job_queue.submit(JobSpec(service_required="sim", delay_s=300))
    stats = await job_queue.stats()
    assert stats["sim"]["scheduled"] == 1


def test_a_job_waits_for_one_thing_at_most() -> None:
    with pytest.raises(ValidationError, match="run_at and delay_s"):
        JobSpec(service_required="sim", run_at=10**12, delay_s=5)
    with pytest.raises(ValidationError, match="delay_s and depends_on"):
        JobSpec(service_required="sim", delay_s=5, depends_on=["a"])


async def test_a_claim_left_wanting_says_when_the_first_scheduled_job_is_due(
    job_queue: JobQueue,
) -> None:
    """Nothing publishes the moment a scheduled job becomes due: the claim tells the worker
    (its due time), so the worker needs no lookup of its own to wake itself then."""
    await job_queue.register_worker("w1", SIM)
    assert (await job_queue.claim_until_due("w1")).due_in_s is None  # nothing scheduled
    await job_queue.submit(JobSpec(service_required="sim", delay_s=3))
    outcome = await job_queue.claim_until_due("w1")
    assert outcome.jobs == []
    assert outcome.due_in_s is not None
    assert 2.0 < outcome.due_in_s <= 3.0

    waiting = await job_queue.submit(JobSpec(service_required="sim"))
    full = await job_queue.claim_until_due("w1", count=1)
    assert [c.job.id for c in full.jobs] == [waiting.id]
    assert full.due_in_s is None  # it took all it asked for: it will claim again anyway
