"""Model affinity in the claim, and fetchable models making a job workable."""

from __future__ import annotations

import asyncio

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


def holding_queue(redis: Redis, namespace: str, hold_s: float) -> JobQueue:
    return JobQueue(redis, namespace=namespace, affinity_hold_s=hold_s)


async def test_a_job_is_left_to_the_free_worker_that_has_its_model_loaded(
    redis_client: Redis, namespace: str
) -> None:
    queue = holding_queue(redis_client, namespace, hold_s=600)
    await queue.register_worker("owner", gpu(["hot"], ["hot"], []))
    assert await queue.claim("owner") == []  # free, with "hot" loaded
    await queue.register_worker("other", gpu([], ["hot"], []))
    job = await queue.submit(needing("hot"))
    assert await queue.claim("other") == []  # held for the owner
    [claimed] = await queue.claim("owner")
    assert claimed.job.id == job.id


async def test_the_hold_is_bounded(redis_client: Redis, namespace: str) -> None:
    queue = holding_queue(redis_client, namespace, hold_s=0.3)
    await queue.register_worker("owner", gpu(["hot"], ["hot"], []))
    assert await queue.claim("owner") == []
    await queue.register_worker("other", gpu([], ["hot"], []))
    job = await queue.submit(needing("hot"))
    claimed = await queue.claim("other")
    for _ in range(200):  # the owner never claims: the other worker gets it once the hold ends
        if claimed:
            break
        await asyncio.sleep(0.05)
        claimed = await queue.claim("other")
    assert [c.job.id for c in claimed] == [job.id]


async def test_no_hold_for_a_busy_or_departed_owner(redis_client: Redis, namespace: str) -> None:
    queue = holding_queue(redis_client, namespace, hold_s=600)
    await queue.register_worker("owner", gpu(["hot"], ["hot"], []))
    assert await queue.claim("owner") == []
    first = await queue.submit(needing("hot"))
    assert [c.job.id for c in await queue.claim("owner")] == [first.id]  # busy now
    await queue.register_worker("other", gpu([], ["hot"], []))
    second = await queue.submit(needing("hot"))
    assert [c.job.id for c in await queue.claim("other")] == [second.id]
    await queue.complete("owner", first.id, 1, None)
    assert await queue.claim("owner") == []  # free again
    third = await queue.submit(needing("hot"))
    assert await queue.claim("other") == []
    await queue.deregister_worker("owner")
    assert [c.job.id for c in await queue.claim("other")] == [third.id]


async def test_no_hold_when_the_free_owner_cannot_run_the_job(
    redis_client: Redis, namespace: str
) -> None:
    queue = holding_queue(redis_client, namespace, hold_s=600)
    owner = WorkerCapabilities.model_validate(
        {
            "services": ["sim"],
            "models": {"sim": {"loaded": ["hot"], "installed": ["hot"]}},
            "customer_access": {"denied_customers": ["acme"]},
        }
    )
    await queue.register_worker("owner", owner)
    assert await queue.claim("owner") == []
    await queue.register_worker("other", gpu([], ["hot"], []))
    job = await queue.submit(needing("hot"))  # acme's: the owner may not run it
    assert [c.job.id for c in await queue.claim("other")] == [job.id]


async def test_the_busy_hold_waits_for_a_busy_owner_then_lets_go(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(
        redis_client, namespace=namespace, affinity_hold_s=600, affinity_busy_hold_s=0.3
    )
    await queue.register_worker("owner", gpu(["hot"], ["hot"], []))
    first = await queue.submit(needing("hot"))
    assert [c.job.id for c in await queue.claim("owner")] == [first.id]  # busy
    await queue.register_worker("other", gpu([], ["hot"], []))
    second = await queue.submit(needing("hot"))
    claimed = await queue.claim("other")
    assert claimed == []  # the busy owner may be free soon
    for _ in range(200):
        if claimed:
            break
        await asyncio.sleep(0.05)
        claimed = await queue.claim("other")
    assert [c.job.id for c in claimed] == [second.id]


async def test_no_hold_for_an_owner_whose_pool_may_not_take_the_job(
    redis_client: Redis, namespace: str
) -> None:
    queue = holding_queue(redis_client, namespace, hold_s=600)

    def in_pool(pool: str, loaded: list[str]) -> WorkerCapabilities:
        models = {"loaded": loaded, "installed": ["hot"]}
        return WorkerCapabilities.model_validate(
            {"services": ["sim"], "models": {"sim": models}, "pool": pool}
        )

    await queue.register_worker("fast-owner", in_pool("fast", ["hot"]))
    assert await queue.claim("fast-owner") == []  # free, "hot" loaded, but pool fast
    await queue.register_worker("standard", in_pool("standard", []))
    spec = JobSpec(
        service_required="sim",
        customer_id="acme",
        requirements={"models": ["hot"], "pool": "standard"},
    )
    job = await queue.submit(spec)  # fast workers never take standard jobs (default fallback)
    assert [c.job.id for c in await queue.claim("standard")] == [job.id]
