"""``JobQueue.submit_and_wait``: the caller is told when its job finishes, whatever the end."""

from __future__ import annotations

import asyncio

import pytest

from emp_queue import FailureClass, JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.models import JobError

SIM = WorkerCapabilities(services=["sim"])


async def claimed_job_id(queue: JobQueue) -> tuple[str, int]:
    """Claims the job a waiter submitted, once it is there."""
    async with asyncio.timeout(5):
        while not (claimed := await queue.claim("w1")):  # noqa: ASYNC110 - polls Redis
            await asyncio.sleep(0.005)
    return claimed[0].job.id, claimed[0].attempt


async def test_the_caller_gets_the_completed_job_with_its_result(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    waiting = asyncio.create_task(
        job_queue.submit_and_wait(JobSpec(service_required="sim"), timeout_s=10)
    )
    job_id, attempt = await claimed_job_id(job_queue)
    assert not waiting.done()
    await job_queue.complete("w1", job_id, attempt, {"answer": 42})
    async with asyncio.timeout(0.5):  # the notice, not the one-second status read
        done = await waiting
    assert (done.id, done.status, done.result) == (job_id, JobStatus.COMPLETED, {"answer": 42})
    assert done == await job_queue.get(job_id)  # the record the notice carried is the stored one
    await job_queue.close()


async def test_a_failed_or_cancelled_job_ends_the_wait_too(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    failing = asyncio.create_task(
        job_queue.submit_and_wait(JobSpec(service_required="sim", max_attempts=1), timeout_s=10)
    )
    job_id, attempt = await claimed_job_id(job_queue)
    error = JobError(failure_class=FailureClass.JOB_FAULT, message="bad input")
    await job_queue.fail("w1", job_id, attempt, error)
    async with asyncio.timeout(0.5):
        failed = await failing
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.message == "bad input"
    assert failed == await job_queue.get(job_id)

    # Cancelled while it waits in the queue (no worker claims it).
    waiting = asyncio.create_task(
        job_queue.submit_and_wait(JobSpec(service_required="sim", id="to-cancel"), timeout_s=10)
    )
    async with asyncio.timeout(5):
        while not await job_queue.redis.exists(job_queue.keys.job("to-cancel")):  # noqa: ASYNC110 - polls Redis
            await asyncio.sleep(0.005)
    await job_queue.cancel("to-cancel")
    async with asyncio.timeout(0.5):
        cancelled = await waiting
    assert cancelled.status is JobStatus.CANCELLED
    await job_queue.close()


async def test_a_job_that_never_finishes_times_out_and_stays(job_queue: JobQueue) -> None:
    with pytest.raises(TimeoutError):
        await job_queue.submit_and_wait(JobSpec(service_required="sim", id="slow"), timeout_s=0.3)
    assert (await job_queue.get("slow")).status is JobStatus.UNWORKABLE  # no worker: waits
    await job_queue.close()


async def test_without_a_notice_the_status_read_finds_the_end(
    job_queue: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job whose id existed already carries another caller's token (or none): no notice
    # comes for this caller, as when one is lost while the subscription reconnects.
    monkeypatch.setattr("emp_queue.core.queue.CHECK_S", 0.1)
    await job_queue.register_worker("w1", SIM)
    await job_queue.submit(JobSpec(service_required="sim", id="existing"))
    waiting = asyncio.create_task(
        job_queue.submit_and_wait(JobSpec(service_required="sim", id="existing"), timeout_s=10)
    )
    job_id, attempt = await claimed_job_id(job_queue)
    await job_queue.complete("w1", job_id, attempt, "late")
    async with asyncio.timeout(2):
        done = await waiting
    assert (done.id, done.status, done.result) == ("existing", JobStatus.COMPLETED, "late")
    await job_queue.close()


async def test_only_the_submitting_queue_is_told(job_queue: JobQueue) -> None:
    other = JobQueue(job_queue.redis, namespace=job_queue.keys.namespace)
    await job_queue.register_worker("w1", SIM)
    mine = asyncio.create_task(
        job_queue.submit_and_wait(JobSpec(service_required="sim"), timeout_s=10)
    )
    theirs = asyncio.create_task(other.submit_and_wait(JobSpec(service_required="sim"), 10))
    first_id, first_attempt = await claimed_job_id(job_queue)
    await job_queue.complete("w1", first_id, first_attempt, "first")
    async with asyncio.timeout(0.5):
        done = await asyncio.wait({mine, theirs}, return_when=asyncio.FIRST_COMPLETED)
    (finished,) = done[0]
    assert finished.result().id == first_id
    second_id, second_attempt = await claimed_job_id(job_queue)
    await job_queue.complete("w1", second_id, second_attempt, "second")
    async with asyncio.timeout(0.5):
        results = {(await mine).result, (await theirs).result}
    assert results == {"first", "second"}
    await job_queue.close()
    await other.close()
