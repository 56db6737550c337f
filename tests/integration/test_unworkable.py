"""Jobs no live worker can run are flagged ``unworkable``, and come back when one appears."""

from __future__ import annotations

from emp_queue import JobQueue, JobSpec, JobStatus, ServiceModels, WorkerCapabilities
from emp_queue.core.events import Event

NEEDS_SDXL = {"models": ["sdxl.safetensors"]}
PLAIN = WorkerCapabilities(services=["comfyui"])
WITH_SDXL = WorkerCapabilities(
    services=["comfyui"], models={"comfyui": ServiceModels(installed=["sdxl.safetensors"])}
)


async def job_events(queue: JobQueue, job_id: str) -> list[Event]:
    return [e for e in await queue.events.read() if e.job_id == job_id]


async def submit_sdxl_job(queue: JobQueue) -> str:
    job = await queue.submit(JobSpec(service_required="comfyui", requirements=NEEDS_SDXL))
    return job.id


async def test_job_no_live_worker_can_run_is_unworkable_at_submit(job_queue: JobQueue) -> None:
    await job_queue.register_worker("plain", PLAIN)

    job = await job_queue.submit(JobSpec(service_required="comfyui", requirements=NEEDS_SDXL))

    assert job.status is JobStatus.UNWORKABLE
    assert (await job_queue.get(job.id)).status is JobStatus.UNWORKABLE
    [event] = await job_events(job_queue, job.id)
    assert (event.type, event.data["status"]) == ("job_submitted", "unworkable")
    assert (await job_queue.stats())["comfyui"] == {"unworkable": 1}
    assert await job_queue.claim("plain") == []


async def test_matching_worker_makes_it_workable(job_queue: JobQueue) -> None:
    job_id = await submit_sdxl_job(job_queue)

    await job_queue.register_worker("sdxl", WITH_SDXL)

    assert (await job_queue.get(job_id)).status is JobStatus.PENDING
    event = (await job_events(job_queue, job_id))[-1]
    assert event.type == "job_status_changed"
    assert (event.data["status"], event.data["reason"]) == ("pending", "worker_available")
    assert (await job_queue.stats())["comfyui"] == {"pending": 1}
    [claimed] = await job_queue.claim("sdxl")
    assert claimed.job.id == job_id


async def test_non_matching_worker_changes_nothing(job_queue: JobQueue) -> None:
    job_id = await submit_sdxl_job(job_queue)
    before = await job_events(job_queue, job_id)

    await job_queue.register_worker("plain", PLAIN)
    await job_queue.register_worker("other", WorkerCapabilities(services=["a1111"]))

    assert (await job_queue.get(job_id)).status is JobStatus.UNWORKABLE
    assert await job_events(job_queue, job_id) == before
    assert await job_queue.claim("plain") == []


async def test_last_matching_worker_leaving_makes_its_jobs_unworkable(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("plain", PLAIN)
    await job_queue.register_worker("sdxl-1", WITH_SDXL)
    await job_queue.register_worker("sdxl-2", WITH_SDXL)
    sdxl_jobs = [await submit_sdxl_job(job_queue) for _ in range(2)]
    plain_job = await job_queue.submit(JobSpec(service_required="comfyui"))

    await job_queue.deregister_worker("sdxl-1")
    assert [(await job_queue.get(i)).status for i in sdxl_jobs] == [JobStatus.PENDING] * 2

    await job_queue.deregister_worker("sdxl-2")

    for job_id in sdxl_jobs:
        assert (await job_queue.get(job_id)).status is JobStatus.UNWORKABLE
        event = (await job_events(job_queue, job_id))[-1]
        assert (event.type, event.data["status"]) == ("job_status_changed", "unworkable")
    assert (await job_queue.get(plain_job.id)).status is JobStatus.PENDING
    assert (await job_queue.stats())["comfyui"] == {"pending": 1, "unworkable": 2}
    [claimed] = await job_queue.claim("plain")
    assert claimed.job.id == plain_job.id

    await job_queue.register_worker("sdxl-3", WITH_SDXL)
    claimed_ids = {c.job.id for c in await job_queue.claim("sdxl-3", count=5)}
    assert claimed_ids == set(sdxl_jobs)


async def test_worker_dropping_a_model_makes_its_jobs_unworkable(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", WITH_SDXL)
    job_id = await submit_sdxl_job(job_queue)
    assert (await job_queue.get(job_id)).status is JobStatus.PENDING

    await job_queue.register_worker("w1", PLAIN)

    assert (await job_queue.get(job_id)).status is JobStatus.UNWORKABLE
    assert await job_queue.claim("w1") == []
