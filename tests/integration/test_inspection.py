"""Read-side views: listing with cursors, explain, workers, depths, workflows."""

from __future__ import annotations

import pytest

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.errors import InvalidJobError, JobNotFoundError

SDXL = {"models": ["sdxl"]}


def comfy(**fields: object) -> WorkerCapabilities:
    return WorkerCapabilities.model_validate({"services": ["comfyui"], **fields})


async def test_list_jobs_pages_newest_first_with_filters(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", comfy())
    jobs = await job_queue.submit_many(
        [
            JobSpec(service_required="comfyui", customer_id="acme" if n % 2 else "globex")
            for n in range(25)
        ]
    )
    [claimed] = await job_queue.claim("w")
    await job_queue.complete("w", claimed.job.id, claimed.attempt, None)

    seen: list[str] = []
    cursor = None
    while True:
        page = await job_queue.list_jobs(customer_id="acme", limit=5, cursor=cursor)
        seen += [job.id for job in page.jobs]
        if page.next_cursor is None or not page.jobs:
            break
        cursor = page.next_cursor
    acme = [job.id for job in reversed(jobs) if job.customer_id == "acme"]
    assert seen == acme

    completed = await job_queue.list_jobs(status=JobStatus.COMPLETED)
    assert [job.id for job in completed.jobs] == [claimed.job.id]
    with pytest.raises(InvalidJobError, match="cursor"):
        await job_queue.list_jobs(cursor="not-a-cursor")


async def test_explain_says_who_could_run_a_waiting_job(job_queue: JobQueue) -> None:
    await job_queue.register_worker("small", comfy(hardware={"gpu_memory_gb": 24}))
    await job_queue.register_worker(
        "big", comfy(hardware={"gpu_memory_gb": 80}, models={"comfyui": {"installed": ["flux"]}})
    )
    job = await job_queue.submit(
        JobSpec(
            service_required="comfyui",
            requirements={"models": ["sdxl"], "hardware": {"gpu_memory_gb": 48}},
        )
    )
    explanation = await job_queue.explain(job.id)
    assert explanation.status is JobStatus.UNWORKABLE
    assert (explanation.live_workers, explanation.serving_service) == (2, 2)
    assert explanation.matching_workers == 0
    counts = {c.requirement: c.satisfied_by for c in explanation.requirements}
    assert counts == {"service": 2, "models": 0, "hardware": 1, "customer": 2}
    assert explanation.nearest_miss == ("big", ["models neither installed nor fetchable: sdxl"])
    assert explanation.position is None


async def test_explain_position_counts_runnable_jobs_ahead(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", comfy(models={"comfyui": {"installed": ["sdxl"]}}))
    await job_queue.submit_many([JobSpec(service_required="comfyui") for _ in range(3)])
    await job_queue.submit_many(
        [JobSpec(service_required="comfyui", requirements=SDXL) for _ in range(2)]
    )
    mine = await job_queue.submit(JobSpec(service_required="comfyui", requirements=SDXL))
    explanation = await job_queue.explain(mine.id)
    assert explanation.matching_workers == 1
    assert explanation.position == 5


async def test_explain_position_counts_equal_scores_submitted_earlier(job_queue: JobQueue) -> None:
    # One script run: one millisecond, so all five share a score; claim order is then the
    # submit order, across classes too (sdxl is loaded: affinity does not tell them apart).
    loaded = {"installed": ["sdxl"], "loaded": ["sdxl"]}
    await job_queue.register_worker("w", comfy(models={"comfyui": loaded}))
    plain, sdxl = (
        JobSpec(service_required="comfyui"),
        JobSpec(service_required="comfyui", requirements=SDXL),
    )
    jobs = await job_queue.submit_many([plain, sdxl, plain, sdxl, plain])
    assert (await job_queue.explain(jobs[3].id)).position == 3
    claimed = await job_queue.claim("w", count=5)
    assert [c.job.id for c in claimed] == [job.id for job in jobs], "the order counted above"


async def test_workers_depths_and_workflows(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", comfy(), machine_id="m1")
    first = await job_queue.submit(
        JobSpec(service_required="comfyui", workflow_id="wf-1", current_step=1, total_steps=2)
    )
    await job_queue.submit(JobSpec(service_required="comfyui"))
    [claimed] = await job_queue.claim("w")
    assert claimed.job.id == first.id

    [info] = await job_queue.workers()
    assert (info.worker_id, info.machine_id, info.running) == ("w", "m1", [first.id])
    [depth] = await job_queue.queue_depths()
    assert depth.service == "comfyui"
    assert depth.counts == {"pending": 1, "assigned": 1}
    assert depth.oldest_wait_ms is not None
    assert depth.oldest_wait_ms >= 0

    state = await job_queue.workflow("wf-1")
    assert (state.status, state.total_steps) == ("running", 2)
    assert [job.id for job in state.jobs] == [first.id]
    with pytest.raises(JobNotFoundError):
        await job_queue.workflow("nope")
