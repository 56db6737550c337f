"""Leases and fencing: a silent worker loses its job, and its late reports are refused."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from emp_queue import (
    FailureClass,
    JobError,
    JobQueue,
    JobSpec,
    JobStatus,
    Revocation,
    StaleAttemptError,
    WorkerCapabilities,
)

LEASE_S = 0.3
PAST_LEASE_S = LEASE_S + 0.1
SIM = WorkerCapabilities(services=["sim"])


def short_lease_queue(redis: Redis, namespace: str, *, avoid_grace_s: float = 2.0) -> JobQueue:
    return JobQueue(redis, namespace=namespace, lease_s=LEASE_S, retry_avoid_grace_s=avoid_grace_s)


async def test_expired_lease_requeues_the_job_with_a_new_attempt(
    redis_client: Redis, namespace: str
) -> None:
    queue = short_lease_queue(redis_client, namespace)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")
    assert claimed.attempt == 1

    await asyncio.sleep(PAST_LEASE_S)
    report = await queue.sweep()

    assert report.requeued == 1
    requeued = await queue.get(job.id)
    assert requeued.status is JobStatus.PENDING
    assert requeued.attempt == 2
    assert (requeued.failures, requeued.lost_leases) == (0, 1), "lost, not failed"
    assert requeued.worker_id is None
    assert requeued.error is not None
    assert requeued.error.failure_class is FailureClass.WORKER_FAULT
    changes = [
        e.data
        for e in await queue.events.read()
        if e.job_id == job.id and e.type == "job_status_changed"
    ]
    assert changes[-1]["reason"] == "lease_expired"
    assert changes[-1]["status"] == "pending"
    assert changes[-1]["attempt"] == 2
    assert (await queue.sweep()).requeued == 0, "a second sweep must find nothing left to do"


async def test_heartbeats_keep_the_lease_alive(redis_client: Redis, namespace: str) -> None:
    queue = short_lease_queue(redis_client, namespace)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")

    for _ in range(8):  # 0.8 s, well past the 0.3 s lease
        await asyncio.sleep(0.1)
        assert (await queue.heartbeat("w1", [(job.id, claimed.attempt)])).revocations == []
        assert (await queue.sweep()).requeued == 0

    still_mine = await queue.get(job.id)
    assert still_mine.status is JobStatus.ASSIGNED
    assert still_mine.attempt == 1
    assert still_mine.worker_id == "w1"


async def test_superseded_attempt_is_fenced_off(redis_client: Redis, namespace: str) -> None:
    queue = short_lease_queue(redis_client, namespace)
    await queue.register_worker("w1", SIM)
    await queue.register_worker("w2", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [old] = await queue.claim("w1")
    await asyncio.sleep(PAST_LEASE_S)
    assert (await queue.sweep()).requeued == 1

    async def assert_old_attempt_refused() -> None:
        before = await queue.get(job.id)
        error = JobError(failure_class=FailureClass.SERVICE_FAULT, message="late")
        with pytest.raises(StaleAttemptError) as completing:
            await queue.complete("w1", job.id, old.attempt, {"late": True})
        with pytest.raises(StaleAttemptError) as reporting:
            await queue.report_progress("w1", job.id, old.attempt, 50.0)
        with pytest.raises(StaleAttemptError) as failing:
            await queue.fail("w1", job.id, old.attempt, error)
        with pytest.raises(StaleAttemptError) as releasing:
            await queue.release("w1", job.id, old.attempt)
        for refused in (completing, reporting, failing, releasing):
            assert refused.value.reason == "superseded"
            assert refused.value.job_id == job.id
        assert await queue.get(job.id) == before

    await assert_old_attempt_refused()  # while the job waits again
    beat = await queue.heartbeat("w1", [(job.id, old.attempt)])
    assert beat.revocations == [Revocation(job.id, "superseded")]
    [new] = await queue.claim("w2")
    assert new.job.id == job.id
    assert new.attempt == old.attempt + 1
    await assert_old_attempt_refused()  # while the new attempt runs

    await queue.complete("w2", job.id, new.attempt, {"by": "w2"})
    done = await queue.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"by": "w2"}
    assert done.attempt == 2


async def test_complete_many_judges_each_attempt_on_its_own(
    redis_client: Redis, namespace: str
) -> None:
    queue = short_lease_queue(redis_client, namespace)
    await queue.register_worker("w1", SIM)
    await queue.register_worker("w2", SIM)
    lost = await queue.submit(JobSpec(service_required="sim"))
    kept = await queue.submit(JobSpec(service_required="sim"))
    [lost_claim] = await queue.claim("w1")
    [kept_claim] = await queue.claim("w1", lease_s=30)
    assert (lost_claim.job.id, kept_claim.job.id) == (lost.id, kept.id)
    await asyncio.sleep(PAST_LEASE_S)
    assert (await queue.sweep()).requeued == 1
    [retaken] = await queue.claim("w2")
    assert retaken.job.id == lost.id

    outcomes = await queue.complete_many(
        "w1", [(lost.id, lost_claim.attempt, "stale"), (kept.id, kept_claim.attempt, "fresh")]
    )

    assert [(o.job_id, o.accepted, o.reason) for o in outcomes] == [
        (lost.id, False, "superseded"),
        (kept.id, True, None),
    ]
    assert (await queue.get(kept.id)).result == "fresh"
    still_running = await queue.get(lost.id)
    assert still_running.status is JobStatus.ASSIGNED
    assert still_running.worker_id == "w2"
    [accepted] = await queue.complete_many("w2", [(lost.id, retaken.attempt, "current")])
    assert accepted.accepted
    assert (await queue.get(lost.id)).result == "current"


async def budget_queue(redis: Redis, namespace: str, *, max_lost_leases: int) -> JobQueue:
    queue = JobQueue(
        redis, namespace=namespace, lease_s=LEASE_S, retry_avoid_grace_s=0,
        max_lost_leases=max_lost_leases,
    )  # fmt: skip
    await queue.register_worker("w1", SIM)
    return queue


async def test_lost_leases_spend_their_own_budget_not_max_attempts(
    redis_client: Redis, namespace: str
) -> None:
    queue = await budget_queue(redis_client, namespace, max_lost_leases=3)
    job = await queue.submit(JobSpec(service_required="sim", max_attempts=1))
    for lost in (1, 2):  # a job whose own failure would end it at once survives preemptions
        await queue.claim("w1")
        await asyncio.sleep(PAST_LEASE_S)
        assert (await queue.sweep()).requeued == 1
        requeued = await queue.get(job.id)
        assert (requeued.status, requeued.failures, requeued.lost_leases) == (
            JobStatus.PENDING, 0, lost,
        )  # fmt: skip
    await queue.claim("w1")
    await asyncio.sleep(PAST_LEASE_S)
    assert (await queue.sweep()).dead_lettered == 1
    dead = await queue.get(job.id)
    assert (dead.status, dead.failures, dead.lost_leases) == (JobStatus.FAILED, 0, 3)
    assert dead.error is not None
    assert "lost its lease 3 times" in dead.error.message
    assert "EMP_MAX_LOST_LEASES=3" in dead.error.message


async def test_lease_expiry_past_the_lost_lease_budget_dead_letters_the_job(
    redis_client: Redis, namespace: str
) -> None:
    queue = await budget_queue(redis_client, namespace, max_lost_leases=2)
    job = await queue.submit(JobSpec(service_required="sim", max_attempts=5))

    [first] = await queue.claim("w1")
    await asyncio.sleep(PAST_LEASE_S)
    assert (await queue.sweep()).requeued == 1
    [second] = await queue.claim("w1")
    assert second.attempt == first.attempt + 1
    await asyncio.sleep(PAST_LEASE_S)
    report = await queue.sweep()

    assert (report.requeued, report.dead_lettered) == (0, 1)
    dead = await queue.get(job.id)
    assert dead.status is JobStatus.FAILED
    assert dead.dead_lettered
    assert (dead.failures, dead.lost_leases) == (0, 2)
    assert [j.id for j in await queue.dead_letters()] == [job.id]
    assert await queue.claim("w1") == []
    [failed_event] = [
        e for e in await queue.events.read() if e.job_id == job.id and e.type == "job_failed"
    ]
    assert failed_event.data["dead_letter"] is True
