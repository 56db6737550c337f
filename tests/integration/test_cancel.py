"""Cancel: waiting jobs end at once; a running job's worker is told, and its result refused."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from emp_queue import (
    FailureClass,
    InvalidTransitionError,
    JobError,
    JobQueue,
    JobSpec,
    JobStatus,
    Revocation,
    StaleAttemptError,
    WorkerCapabilities,
)

SIM = WorkerCapabilities(services=["sim"])


async def next_message(control: PubSub, *, within_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    async with asyncio.timeout(within_s):
        while True:
            message = await control.get_message(
                ignore_subscribe_messages=True, timeout=max(0.0, deadline - time.monotonic())
            )
            if message is not None:
                notice: dict[str, Any] = json.loads(message["data"])
                return notice


async def test_cancel_pending_job_ends_it_at_once(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))

    cancelled = await job_queue.cancel(job.id, reason="changed my mind")

    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert await job_queue.claim("w1") == []
    assert (await job_queue.get(job.id)).status is JobStatus.CANCELLED
    [event] = [
        e for e in await job_queue.events.read() if e.job_id == job.id and e.type == "job_cancelled"
    ]
    assert event.data["previous_status"] == "pending"
    assert event.data["reason"] == "changed my mind"


async def test_cancel_running_job_tells_its_worker(
    job_queue: JobQueue, redis_client: Redis
) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    [claimed] = await job_queue.claim("w1")
    await job_queue.report_progress("w1", job.id, claimed.attempt, 40.0)
    async with redis_client.pubsub() as control:
        await control.subscribe(job_queue.keys.worker_control("w1"))
        confirmation = await control.get_message(timeout=1.0)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"

        await job_queue.cancel(job.id)
        notice = await next_message(control, within_s=1.0)

    assert notice["job_id"] == job.id
    assert notice["action"] == "cancel"
    beat = await job_queue.heartbeat("w1", [(job.id, claimed.attempt)])
    assert beat.revocations == [Revocation(job.id, "cancelled")]
    with pytest.raises(StaleAttemptError) as refused:
        await job_queue.complete("w1", job.id, claimed.attempt, {"late": True})
    assert refused.value.reason == "cancelled"
    with pytest.raises(StaleAttemptError, match="cancelled"):
        await job_queue.report_progress("w1", job.id, claimed.attempt, 90.0)
    with pytest.raises(StaleAttemptError, match="cancelled"):
        await job_queue.fail(
            "w1",
            job.id,
            claimed.attempt,
            JobError(failure_class=FailureClass.SERVICE_FAULT, message="interrupted"),
        )
    final = await job_queue.get(job.id)
    assert final.status is JobStatus.CANCELLED
    assert final.result is None
    assert final.error is None
    assert final.progress == 40.0
    types = [e.type for e in await job_queue.events.read() if e.job_id == job.id]
    assert types[-1] == "job_cancelled"
    assert "job_failed" not in types
    assert "complete_job" not in types


async def test_cancel_completed_job_is_refused(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    [claimed] = await job_queue.claim("w1")
    await job_queue.complete("w1", job.id, claimed.attempt, "done")

    with pytest.raises(InvalidTransitionError, match="completed"):
        await job_queue.cancel(job.id)

    done = await job_queue.get(job.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, "done")
    types = [e.type for e in await job_queue.events.read() if e.job_id == job.id]
    assert "job_cancelled" not in types
