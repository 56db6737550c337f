"""Pools with fallback in the claim: a job waits for its pool, then for the next along the
fallback order; automatic pools from the class's measured run time."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.matching import JobClass
from emp_queue.core.pools import PoolRules, PoolSource
from emp_queue.worker import JobContext, Worker, WorkerSettings

RULES = PoolRules(delay_ms={"fast": 30_000, "standard": 30_000, "heavy": 30_000})


def queue_with(redis: Redis, namespace: str, rules: PoolRules = RULES) -> JobQueue:
    return JobQueue(redis, namespace=namespace, pools=rules)


def job(pool: str | None = None, age_s: float = 0.0) -> JobSpec:
    return JobSpec(
        service_required="sim",
        requirements={"pool": pool} if pool else {},
        workflow_datetime=round((time.time() - age_s) * 1000),
    )


async def register(queue: JobQueue, worker_id: str, pool: str | None) -> None:
    await queue.register_worker(worker_id, WorkerCapabilities(services=["sim"], pool=pool))


async def test_a_job_of_another_pool_waits_its_fallback_delay(
    redis_client: Redis, namespace: str
) -> None:
    queue = queue_with(redis_client, namespace)
    for pool in ("heavy", "standard", "fast"):
        await register(queue, pool, pool)
    fresh = await queue.submit(job("fast"))
    assert fresh.status == "pending"  # not unworkable: other pools may take it later
    assert await queue.claim("heavy") == []
    assert await queue.claim("standard") == []
    assert [c.job.id for c in await queue.claim("fast")] == [fresh.id]

    # fast -> standard after 30 s, -> heavy after 60 s (the 2nd pool of the order).
    waited_45_s = await queue.submit(job("fast", age_s=45))
    assert await queue.claim("heavy") == []
    assert [c.job.id for c in await queue.claim("standard")] == [waited_45_s.id]
    waited_65_s = await queue.submit(job("fast", age_s=65))
    assert [c.job.id for c in await queue.claim("heavy")] == [waited_65_s.id]


async def test_a_pool_outside_the_fallback_order_never_takes_the_job(
    redis_client: Redis, namespace: str
) -> None:
    queue = queue_with(redis_client, namespace)
    await register(queue, "fast", "fast")
    heavy_job = await queue.submit(job("heavy", age_s=3600))  # heavy -> standard only
    assert await queue.claim("fast") == []
    await register(queue, "anywhere", None)  # a worker without pool takes every pool's jobs
    assert [c.job.id for c in await queue.claim("anywhere")] == [heavy_job.id]


async def test_a_measured_class_gets_its_pool_automatically(
    redis_client: Redis, namespace: str
) -> None:
    queue = queue_with(redis_client, namespace)
    await register(queue, "heavy", "heavy")
    await register(queue, "fast", "fast")
    first = await queue.submit(job())
    # Not measured yet: no pool, any worker takes it.
    [claimed] = await queue.claim("heavy")
    await queue.complete("heavy", claimed.job.id, claimed.attempt, {})
    class_id = JobClass("sim", None, first.requirements).class_id
    run_ms = await redis_client.hget(queue.keys.job_class(class_id), "run_ms")
    assert run_ms is not None
    assert float(run_ms) < 30_000  # measured: a fast class
    second = await queue.submit(job())
    assert await queue.claim("heavy") == []  # a fast job now; heavy only after 60 s
    assert [c.job.id for c in await queue.claim("fast")] == [second.id]


async def test_a_pool_outside_the_scheme_is_not_bound_by_measured_pools(
    redis_client: Redis, namespace: str
) -> None:
    # Machines that name their pool after their GPU (EMP_WORKER_POOL=us-4090) kept claiming
    # nothing once their classes had a measured run time (found by bench/monitor_stack.py).
    queue = queue_with(redis_client, namespace)
    await register(queue, "gpu", "us-4090")
    spec = job()
    class_id = JobClass("sim", None, spec.requirements).class_id
    await redis_client.hset(queue.keys.job_class(class_id), "run_ms", 1_000)  # a fast class
    measured = await queue.submit(spec)
    assert [c.job.id for c in await queue.claim("gpu")] == [measured.id]
    # A job that names its pool is still left to that pool (and its fallback order).
    named = await queue.submit(job("fast", age_s=3600))
    assert await queue.claim("gpu") == []
    assert named.status == "pending"


async def test_the_estimate_moves_with_the_run_times(redis_client: Redis, namespace: str) -> None:
    queue = queue_with(redis_client, namespace)
    await register(queue, "w", None)
    spec = job()
    class_id = JobClass("sim", None, spec.requirements).class_id
    await redis_client.hset(queue.keys.job_class(class_id), "run_ms", 200_000)  # heavy
    for _ in range(3):
        await queue.submit(job())
        [claimed] = await queue.claim("w")
        await queue.complete("w", claimed.job.id, claimed.attempt, {})
    estimate = float(await redis_client.hget(queue.keys.job_class(class_id), "run_ms") or 0)
    # Three runs of ~0 s pull 200 s down by 1 - 0.8^3 (about half), not to 0 at once.
    assert 200_000 * 0.8**3 - 1_000 < estimate < 200_000 * 0.8**3 + 1_000


async def test_pools_off_leave_one_pool_name_unapplied(redis_client: Redis, namespace: str) -> None:
    queue = queue_with(redis_client, namespace, PoolRules(enabled=False))
    await register(queue, "heavy", "heavy")
    fast_job = await queue.submit(job("fast"))
    assert [c.job.id for c in await queue.claim("heavy")] == [fast_job.id]
    hard = await queue.submit(job_with_pools(["fast", "standard"]))
    assert hard.status == "unworkable"  # a list of pools stays a hard requirement


def job_with_pools(pools: list[str]) -> JobSpec:
    return JobSpec(service_required="sim", requirements={"pool": pools})


async def test_explain_shows_the_pool_how_it_was_decided_and_the_fallback(
    redis_client: Redis, namespace: str
) -> None:
    queue = queue_with(redis_client, namespace)
    await register(queue, "heavy", "heavy")
    waiting = await queue.submit(job("fast", age_s=5))
    pool = (await queue.explain(waiting.id)).pool
    assert pool is not None
    assert (pool.pool, pool.source) == ("fast", PoolSource.REQUIREMENT)
    order_ms = round((time.time() - 5) * 1000)
    [(standard, standard_at), (heavy, heavy_at)] = pool.fallback
    assert (standard, heavy) == ("standard", "heavy")
    assert abs(standard_at - (order_ms + 30_000)) < 2_000
    assert heavy_at - standard_at == 30_000
    summary = pool.summary(order_ms + 5_000)
    assert "pool fast (named in its requirements)" in summary
    assert "heavy workers in 55 s" in summary
    unmeasured = (await queue.explain((await queue.submit(job())).id)).pool
    assert unmeasured is not None
    assert unmeasured.source is PoolSource.UNMEASURED


async def test_the_claim_says_when_a_job_it_left_becomes_the_workers(
    redis_client: Redis, namespace: str
) -> None:
    queue = queue_with(redis_client, namespace)
    await register(queue, "heavy", "heavy")
    await queue.submit(job("fast", age_s=50))  # heavy may take it 60 s after its order time
    outcome = await queue.claim_until_due("heavy")
    assert outcome.jobs == []
    assert outcome.due_in_s is not None
    assert 5 < outcome.due_in_s <= 10.5
    await queue.submit(job("heavy", age_s=0))  # fast workers never take heavy jobs
    await register(queue, "fast", "fast")
    outcome = await queue.claim_until_due("fast")
    assert len(outcome.jobs) == 1  # its own fast job
    assert (await queue.claim_until_due("fast")).due_in_s is None


async def test_an_idle_worker_of_another_pool_wakes_when_the_fallback_delay_ends(
    redis_client: Redis, namespace: str
) -> None:
    rules = PoolRules(delay_ms={"fast": 500})  # fast -> standard 0.5 s, -> heavy 1 s
    queue = queue_with(redis_client, namespace, rules)
    started: asyncio.Queue[float] = asyncio.Queue()

    async def handler(_context: JobContext) -> None:
        started.put_nowait(time.monotonic())

    heavy = WorkerCapabilities(services=["sim"], pool="heavy")
    settings = WorkerSettings(heartbeat_interval_s=0.2, drain_grace_s=0.5, idle_poll_s=30)
    worker = Worker(queue, "heavy-1", heavy, handler, settings)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 5)
        submitted = time.monotonic()
        await queue.submit(JobSpec(service_required="sim", requirements={"pool": "fast"}))
        began = await asyncio.wait_for(started.get(), 15)
        # Not before the delay; long before the 30 s idle tick (generous: a loaded machine).
        assert 0.9 < began - submitted < 10
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
