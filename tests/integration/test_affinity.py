"""Model affinity in the claim, and fetchable models making a job workable."""

from __future__ import annotations

from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities


def gpu(loaded: list[str], installed: list[str], fetchable: list[str]) -> WorkerCapabilities:
    models = {"loaded": loaded, "installed": installed, "fetchable": fetchable}
    return WorkerCapabilities.model_validate({"services": ["sim"], "models": {"sim": models}})


def needing(model: str) -> JobSpec:
    return JobSpec(service_required="sim", customer_id="acme", requirements={"models": [model]})


async def test_a_worker_takes_the_job_whose_model_it_has_loaded_first(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("w", gpu(["hot"], ["hot", "warm"], ["cold"]))
    cold, warm, hot = await job_queue.submit_many(
        [needing("cold"), needing("warm"), needing("hot")]
    )
    claimed = await job_queue.claim("w", count=3)
    assert [c.job.id for c in claimed] == [hot.id, warm.id, cold.id]


async def test_affinity_off_keeps_plain_order(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(redis_client, namespace=namespace, affinity_window_s=0)
    await queue.register_worker("w", gpu(["hot"], ["hot"], ["cold"]))
    cold, hot = await queue.submit_many([needing("cold"), needing("hot")])
    assert [c.job.id for c in await queue.claim("w", count=2)] == [cold.id, hot.id]


async def test_a_fetchable_model_makes_a_job_workable(job_queue: JobQueue) -> None:
    await job_queue.register_worker("bare", gpu([], [], []))
    job = await job_queue.submit(needing("cold"))
    assert job.status is JobStatus.UNWORKABLE
    await job_queue.register_worker("fetcher", gpu([], [], ["cold"]))
    [claimed] = await job_queue.claim("fetcher")
    assert claimed.job.id == job.id
