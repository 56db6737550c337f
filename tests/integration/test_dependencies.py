"""Workflow ordering: a job that depends on others waits as blocked until they complete,
and is cancelled, with the reason, when one of them ends otherwise."""

from __future__ import annotations

import pytest

from emp_queue import FailureClass, JobError, JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.errors import UnknownDependencyError

SIM = WorkerCapabilities(services=["sim"])


async def run_one(job_queue: JobQueue, worker_id: str, expected_id: str) -> None:
    [claimed] = await job_queue.claim(worker_id)
    assert claimed.job.id == expected_id
    await job_queue.complete(worker_id, claimed.job.id, claimed.attempt, {"ok": True})


async def test_step_two_waits_for_step_one(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    step1 = await job_queue.submit(JobSpec(id="s1", service_required="sim", workflow_id="wf"))
    step2 = await job_queue.submit(
        JobSpec(id="s2", service_required="sim", workflow_id="wf", depends_on=["s1"])
    )
    assert step2.status is JobStatus.BLOCKED
    assert step2.depends_on == ["s1"]

    [claimed] = await job_queue.claim("w1", count=10)  # step 2 is not offered alongside
    assert claimed.job.id == step1.id
    assert (await job_queue.get("s2")).status is JobStatus.BLOCKED

    await job_queue.complete("w1", "s1", claimed.attempt, {"ok": True})
    assert (await job_queue.get("s2")).status is JobStatus.PENDING
    await run_one(job_queue, "w1", "s2")


async def test_a_job_waits_for_every_dependency(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    await job_queue.submit(JobSpec(id="a", service_required="sim"))
    await job_queue.submit(JobSpec(id="b", service_required="sim"))
    await job_queue.submit(JobSpec(id="c", service_required="sim", depends_on=["a", "b"]))

    await run_one(job_queue, "w1", "a")
    assert (await job_queue.get("c")).status is JobStatus.BLOCKED
    await run_one(job_queue, "w1", "b")
    await run_one(job_queue, "w1", "c")


async def test_depending_on_a_completed_job_runs_at_once(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    await job_queue.submit(JobSpec(id="a", service_required="sim"))
    await run_one(job_queue, "w1", "a")
    job = await job_queue.submit(JobSpec(id="b", service_required="sim", depends_on=["a"]))
    assert job.status is JobStatus.PENDING


async def test_a_failed_step_cancels_the_steps_after_it(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    await job_queue.submit(JobSpec(id="a", service_required="sim", max_attempts=1))
    await job_queue.submit(JobSpec(id="b", service_required="sim", depends_on=["a"]))
    await job_queue.submit(JobSpec(id="c", service_required="sim", depends_on=["b"]))

    [claimed] = await job_queue.claim("w1")
    await job_queue.fail(
        "w1", "a", claimed.attempt, JobError(failure_class=FailureClass.JOB_FAULT, message="bad")
    )

    for job_id, cause, ended in (("b", "a", "failed"), ("c", "b", "cancelled")):
        job = await job_queue.get(job_id)
        assert job.status is JobStatus.CANCELLED
        assert job.message == f"job {cause} it depends on ended {ended}; not run"
    assert await job_queue.claim("w1") == []
    reasons = {
        e.job_id: e.data["reason"]
        for e in await job_queue.events.read()
        if e.type == "job_cancelled"
    }
    assert reasons == {"b": "dependency_failed", "c": "dependency_cancelled"}


async def test_a_cancelled_dependency_cancels_its_dependent(job_queue: JobQueue) -> None:
    await job_queue.submit(JobSpec(id="a", service_required="sim"))
    await job_queue.submit(JobSpec(id="b", service_required="sim", depends_on=["a"]))
    await job_queue.cancel("a")
    assert (await job_queue.get("b")).status is JobStatus.CANCELLED
    # Submitted after the failure: cancelled at once, never claimable.
    late = await job_queue.submit(JobSpec(id="c", service_required="sim", depends_on=["a"]))
    assert late.status is JobStatus.CANCELLED


async def test_a_blocked_job_can_be_cancelled(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    await job_queue.submit(JobSpec(id="a", service_required="sim"))
    await job_queue.submit(JobSpec(id="b", service_required="sim", depends_on=["a"]))
    assert (await job_queue.cancel("b")).status is JobStatus.CANCELLED
    await run_one(job_queue, "w1", "a")
    assert (await job_queue.get("b")).status is JobStatus.CANCELLED
    assert await job_queue.claim("w1") == []


async def test_unknown_or_foreign_dependencies_are_refused(job_queue: JobQueue) -> None:
    with pytest.raises(UnknownDependencyError, match="'nope'"):
        await job_queue.submit(JobSpec(service_required="sim", depends_on=["nope"]))
    await job_queue.submit(JobSpec(id="theirs", service_required="sim", customer_id="acme"))
    with pytest.raises(UnknownDependencyError, match="'theirs'"):
        await job_queue.submit(
            JobSpec(service_required="sim", customer_id="other", depends_on=["theirs"])
        )


async def test_after_previous_step_orders_a_workflow_by_step_number(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    for step in (1, 2, 3):
        await job_queue.submit(
            JobSpec(
                id=f"step{step}",
                service_required="sim",
                workflow_id="wf",
                current_step=step,
                total_steps=3,
                after_previous_step=step > 1,
            )
        )
    statuses = [(await job_queue.get(f"step{n}")).status for n in (1, 2, 3)]
    assert statuses == [JobStatus.PENDING, JobStatus.BLOCKED, JobStatus.BLOCKED]
    for step in (1, 2, 3):
        await run_one(job_queue, "w1", f"step{step}")
    types = [e.type for e in await job_queue.events.read()]
    assert types.count("workflow_completed") == 1
