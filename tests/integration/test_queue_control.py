"""Queue control: a paused service's jobs wait, a draining one refuses new jobs, a paused
pool's workers claim nothing; resuming restores each."""

from __future__ import annotations

import pytest

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.queue_control import ControlTarget, QueueState, controls, set_state
from emp_queue.errors import InvalidTransitionError, QueueDrainingError

SIM = WorkerCapabilities(services=["sim", "other"])


async def control(job_queue: JobQueue, target: ControlTarget, name: str, state: QueueState) -> None:
    await set_state(job_queue.redis, job_queue.keys, target, name, state, by="ops", reason="test")


async def test_a_paused_service_keeps_its_jobs_waiting_until_resumed(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    await control(job_queue, ControlTarget.SERVICE, "sim", QueueState.PAUSED)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    other = await job_queue.submit(JobSpec(service_required="other"))

    assert job.status is JobStatus.PENDING
    claimed = await job_queue.claim("w1", count=5)
    assert [c.job.id for c in claimed] == [other.id]  # the other service goes on

    explanation = await job_queue.explain(job.id)
    assert any("service 'sim' is paused by ops (test)" in reason for reason in explanation.held)

    await control(job_queue, ControlTarget.SERVICE, "sim", QueueState.OPEN)
    [resumed] = await job_queue.claim("w1")
    assert resumed.job.id == job.id
    assert (await job_queue.explain(job.id)).held == ()


async def test_a_paused_service_is_not_offered_to_a_workflow_pinned_worker(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker(
        "pinned", WorkerCapabilities(services=["sim"], workflow_id="wf")
    )
    await job_queue.submit(JobSpec(service_required="sim", workflow_id="wf"))
    await control(job_queue, ControlTarget.SERVICE, "sim", QueueState.PAUSED)
    assert await job_queue.claim("pinned") == []
    await control(job_queue, ControlTarget.SERVICE, "sim", QueueState.OPEN)
    assert len(await job_queue.claim("pinned")) == 1


async def test_a_draining_service_refuses_new_jobs_and_runs_the_waiting_ones(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("w1", SIM)
    waiting = await job_queue.submit(JobSpec(service_required="sim"))
    await control(job_queue, ControlTarget.SERVICE, "sim", QueueState.DRAINING)

    with pytest.raises(QueueDrainingError, match="service 'sim' is draining"):
        await job_queue.submit(JobSpec(service_required="sim"))
    with pytest.raises(QueueDrainingError):
        await job_queue.submit_many(
            [JobSpec(id="fine", service_required="other"), JobSpec(service_required="sim")]
        )
    assert await job_queue.get_many(["fine"]) == []  # the batch was refused whole

    [claimed] = await job_queue.claim("w1")
    assert claimed.job.id == waiting.id
    await control(job_queue, ControlTarget.SERVICE, "sim", QueueState.OPEN)
    assert (await job_queue.submit(JobSpec(service_required="sim"))).status is JobStatus.PENDING


async def test_a_paused_pool_claims_nothing_while_other_pools_go_on(job_queue: JobQueue) -> None:
    await job_queue.register_worker("gpu1", WorkerCapabilities(services=["sim"], pool="gpu"))
    await job_queue.register_worker("cpu1", WorkerCapabilities(services=["sim"], pool="cpu"))
    await control(job_queue, ControlTarget.POOL, "gpu", QueueState.PAUSED)
    job = await job_queue.submit(JobSpec(service_required="sim"))

    assert await job_queue.claim("gpu1") == []
    [claimed] = await job_queue.claim("cpu1")
    assert claimed.job.id == job.id

    with pytest.raises(InvalidTransitionError, match="cannot be drained"):
        await control(job_queue, ControlTarget.POOL, "gpu", QueueState.DRAINING)
    [listed] = await controls(job_queue.redis, job_queue.keys)
    assert (listed.target, listed.name, listed.state, listed.by) == (
        ControlTarget.POOL,
        "gpu",
        QueueState.PAUSED,
        "ops",
    )


async def test_explain_names_the_pools_when_every_matching_worker_is_paused(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("gpu1", WorkerCapabilities(services=["sim"], pool="gpu"))
    await control(job_queue, ControlTarget.POOL, "gpu", QueueState.PAUSED)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    assert (await job_queue.explain(job.id)).held == (
        "pool 'gpu' is paused by ops (test): its workers claim nothing",
    )
