"""Preemption with the real ``emp worker``: SIGTERM hands a running job back, and another
machine finishes it."""

from __future__ import annotations

from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, JobStatus

from .conftest import eventually


async def test_drained_job_is_requeued_and_finished_on_another_machine(
    start_agent, job_queue: JobQueue
) -> None:
    long_job = JobSpec(service_required="simulation", payload={"steps": 100, "step_delay_s": 0.05})
    async with start_agent(
        machine_id="spot-1", workers="simulation:1", worker_command=None, drain_grace_s=0.5
    ):
        job = await job_queue.submit(long_job)

        async def running() -> bool:
            return (await job_queue.get(job.id)).status is JobStatus.IN_PROGRESS

        await eventually(running)
    # The agent has stopped: its worker drained and handed the job back, not failed it
    # (with no live worker left the queue flags it unworkable until one comes).
    handed_back = await job_queue.get(job.id)
    assert handed_back.status in (JobStatus.PENDING, JobStatus.UNWORKABLE)
    assert handed_back.error is None
    async with start_agent(machine_id="spot-2", workers="simulation:1", worker_command=None):

        async def finished() -> bool:
            return (await job_queue.get(job.id)).status is JobStatus.COMPLETED

        await eventually(finished, timeout_s=40)
    done = await job_queue.get(job.id)
    assert done.worker_id == "spot-2-simulation-0"
