"""Failure classes, retries with backoff elsewhere, dead letters and manual retry."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from emp_queue import (
    Backoff,
    FailureClass,
    InvalidTransitionError,
    JobError,
    JobNotFoundError,
    JobQueue,
    JobSpec,
    JobStatus,
    WorkerCapabilities,
)

SIM = WorkerCapabilities(services=["sim"])
TINY_BACKOFF = Backoff(base_s=0.05, cap_s=0.2)


def fault(failure_class: FailureClass, message: str = "boom") -> JobError:
    return JobError(failure_class=failure_class, message=message)


async def server_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_job_fault_fails_at_once(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim", max_attempts=5))
    [claimed] = await job_queue.claim("w1")

    status = await job_queue.fail(
        "w1", job.id, claimed.attempt, fault(FailureClass.JOB_FAULT, "invalid workflow")
    )

    assert status is JobStatus.FAILED
    failed = await job_queue.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.failure_class is FailureClass.JOB_FAULT
    assert failed.error.message == "invalid workflow"
    assert not failed.dead_lettered
    assert await job_queue.claim("w1") == []
    [event] = [
        e for e in await job_queue.events.read() if e.job_id == job.id and e.type == "job_failed"
    ]
    assert event.data["failure_class"] == "job_fault"
    assert event.data["error"]["message"] == "invalid workflow"
    assert event.data["dead_letter"] is False


async def test_timeout_ends_as_timeout(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim", max_attempts=5))
    [claimed] = await job_queue.claim("w1")

    status = await job_queue.fail("w1", job.id, claimed.attempt, fault(FailureClass.TIMEOUT))

    assert status is JobStatus.TIMEOUT
    timed_out = await job_queue.get(job.id)
    assert timed_out.status is JobStatus.TIMEOUT
    assert timed_out.error is not None
    assert timed_out.error.failure_class is FailureClass.TIMEOUT


async def test_worker_fault_retries_after_the_backoff(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(
        redis_client,
        namespace=namespace,
        backoff=Backoff(base_s=0.2, cap_s=0.2),  # 100-200 ms with jitter
        retry_avoid_grace_s=0,
    )
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [first] = await queue.claim("w1")

    status = await queue.fail("w1", job.id, first.attempt, fault(FailureClass.WORKER_FAULT))
    early = await queue.claim("w1")

    assert status is JobStatus.PENDING
    assert early == [], "claimable before its backoff elapsed"
    waiting = await queue.get(job.id)
    assert waiting.attempt == 2
    assert waiting.failures == 1
    assert waiting.not_before is not None
    now = await server_ms(redis_client)
    assert now < waiting.not_before <= now + 200

    await asyncio.sleep((waiting.not_before - now) / 1000 + 0.02)
    [second] = await queue.claim("w1")
    assert second.job.id == job.id
    assert second.attempt == 2


async def test_sweep_promotes_a_retry_whose_backoff_elapsed(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(redis_client, namespace=namespace, backoff=TINY_BACKOFF)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")
    await queue.fail("w1", job.id, claimed.attempt, fault(FailureClass.SERVICE_FAULT))

    await asyncio.sleep(0.06)
    report = await queue.sweep()

    assert report.promoted == 1
    events = [e for e in await queue.events.read() if e.job_id == job.id]
    assert events[-1].type == "job_status_changed"
    assert events[-1].data["reason"] == "backoff_elapsed"


async def test_retry_prefers_another_worker(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(
        redis_client, namespace=namespace, backoff=TINY_BACKOFF, retry_avoid_grace_s=0.3
    )
    await queue.register_worker("w1", SIM)
    await queue.register_worker("w2", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")
    await queue.fail("w1", job.id, claimed.attempt, fault(FailureClass.WORKER_FAULT))
    await asyncio.sleep(0.06)  # past the backoff, inside the grace

    assert await queue.claim("w1") == []
    [retaken] = await queue.claim("w2")
    assert retaken.job.id == job.id
    assert retaken.job.worker_id == "w2"


async def test_failing_worker_gets_the_retry_back_after_the_grace(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(
        redis_client, namespace=namespace, backoff=TINY_BACKOFF, retry_avoid_grace_s=0.2
    )
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")
    await queue.fail("w1", job.id, claimed.attempt, fault(FailureClass.WORKER_FAULT))
    await asyncio.sleep(0.06)
    assert await queue.claim("w1") == []

    await asyncio.sleep(0.2)
    [retaken] = await queue.claim("w1")
    assert retaken.job.id == job.id


async def test_avoided_retry_does_not_hide_the_rest_of_its_class(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(redis_client, namespace=namespace, backoff=TINY_BACKOFF, retry_avoid_grace_s=5)
    await queue.register_worker("w1", SIM)
    failed = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")
    assert claimed.job.id == failed.id
    behind = await queue.submit(JobSpec(service_required="sim"))
    await queue.fail("w1", failed.id, claimed.attempt, fault(FailureClass.WORKER_FAULT))
    await asyncio.sleep(0.06)

    [next_job] = await queue.claim("w1")

    assert next_job.job.id == behind.id


async def test_exhausted_attempts_go_to_the_dead_letters(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(redis_client, namespace=namespace, backoff=TINY_BACKOFF, retry_avoid_grace_s=0)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim", max_attempts=2))
    [first] = await queue.claim("w1")
    assert await queue.fail("w1", job.id, first.attempt, fault(FailureClass.WORKER_FAULT)) == (
        JobStatus.PENDING
    )
    await asyncio.sleep(0.06)
    [second] = await queue.claim("w1")

    status = await queue.fail("w1", job.id, second.attempt, fault(FailureClass.SERVICE_FAULT))

    assert status is JobStatus.FAILED
    dead = await queue.get(job.id)
    assert dead.dead_lettered
    assert dead.failures == 2
    assert dead.error is not None
    assert dead.error.failure_class is FailureClass.SERVICE_FAULT
    assert [j.id for j in await queue.dead_letters()] == [job.id]
    event = [e for e in await queue.events.read() if e.job_id == job.id][-1]
    assert (event.type, event.data["dead_letter"]) == ("job_failed", True)


async def test_retry_requeues_a_dead_letter(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(redis_client, namespace=namespace, retry_avoid_grace_s=0)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim", max_attempts=1))
    [claimed] = await queue.claim("w1")
    await queue.fail("w1", job.id, claimed.attempt, fault(FailureClass.WORKER_FAULT))
    assert (await queue.get(job.id)).dead_lettered

    retried = await queue.retry(job.id)

    assert retried.status is JobStatus.PENDING
    assert retried.failures == 0
    assert retried.attempt == claimed.attempt + 1
    assert not retried.dead_lettered
    assert retried.error is None
    assert await queue.dead_letters() == []
    [again] = await queue.claim("w1")
    assert again.attempt == retried.attempt
    await queue.complete("w1", job.id, again.attempt, "second time lucky")
    done = await queue.get(job.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, "second time lucky")


async def test_retry_of_a_completed_job_is_refused(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    [claimed] = await job_queue.claim("w1")
    await job_queue.complete("w1", job.id, claimed.attempt, 1)

    with pytest.raises(InvalidTransitionError, match="completed"):
        await job_queue.retry(job.id)
    done = await job_queue.get(job.id)
    assert (done.status, done.attempt, done.result) == (JobStatus.COMPLETED, 1, 1)


async def test_retry_and_cancel_of_an_unknown_job(job_queue: JobQueue) -> None:
    with pytest.raises(JobNotFoundError, match="no-such-job"):
        await job_queue.retry("no-such-job")
    with pytest.raises(JobNotFoundError, match="no-such-job"):
        await job_queue.cancel("no-such-job")


async def test_service_fault_retries_stop_when_the_retry_window_is_spent(
    redis_client: Redis, namespace: str
) -> None:
    window = Backoff(base_s=0.05, cap_s=0.05, retry_window_s=0.4)
    queue = JobQueue(redis_client, namespace=namespace, backoff=window, retry_avoid_grace_s=0)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim", max_attempts=100))
    statuses = []
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(5):
        while not statuses or statuses[-1] is JobStatus.PENDING:
            claimed = await queue.claim("w1")
            if not claimed:
                await asyncio.sleep(0.02)
                continue
            statuses.append(
                await queue.fail(
                    "w1", job.id, claimed[0].attempt, fault(FailureClass.SERVICE_FAULT)
                )
            )
    elapsed_s = asyncio.get_running_loop().time() - started
    ended = await queue.get(job.id)

    assert statuses[-1] is JobStatus.FAILED
    assert 2 < ended.failures < 100
    assert 0.4 <= elapsed_s < 2
    dead = [e for e in await queue.events.read() if e.type == "job_failed"]
    assert dead[-1].data["retry_window_exhausted"] is True
