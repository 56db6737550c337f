"""Claims: exactly once under concurrency, in priority/FIFO order, past unrunnable jobs."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.broker import connect

SIM = WorkerCapabilities(services=["sim"])


async def test_fifty_concurrent_claimers_claim_every_job_exactly_once(
    redis_url: str, namespace: str
) -> None:
    clients = [connect(redis_url) for _ in range(50)]
    queues = [JobQueue(client, namespace=namespace) for client in clients]
    try:
        for index, queue in enumerate(queues):
            await queue.register_worker(f"w{index}", SIM)
        submitted = await queues[0].submit_many(
            [JobSpec(service_required="sim", payload={"n": n}) for n in range(1000)]
        )

        async def drain(index: int) -> list[str]:
            mine: list[str] = []
            while claimed := await queues[index].claim(f"w{index}", count=3):
                mine.extend(c.job.id for c in claimed)
            return mine

        per_worker = await asyncio.gather(*(drain(i) for i in range(50)))
    finally:
        for client in clients:
            await client.aclose()
    claimed_ids = [job_id for ids in per_worker for job_id in ids]
    assert len(claimed_ids) == len(submitted)
    assert set(claimed_ids) == {job.id for job in submitted}
    assert sum(1 for ids in per_worker if ids) > 1, "the claims were not actually concurrent"


async def test_priority_then_exact_fifo_order(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    # One batch: all jobs get the same millisecond, so only the sequence can keep FIFO.
    specs = [JobSpec(service_required="sim", priority=50, payload={"n": n}) for n in range(300)]
    specs.insert(150, JobSpec(service_required="sim", priority=90, payload={"n": "urgent"}))
    specs.append(JobSpec(service_required="sim", priority=10, payload={"n": "later"}))
    await job_queue.submit_many(specs)
    order = [c.job.payload["n"] for c in await job_queue.claim("w", count=400)]
    assert order == ["urgent", *range(300), "later"]


async def test_workflow_steps_keep_the_workflow_position(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    first_step = JobSpec(
        service_required="sim", workflow_id="wf", current_step=1, total_steps=2, payload={"n": 1}
    )
    await job_queue.submit(first_step)
    await job_queue.submit_many([JobSpec(service_required="sim", payload={"n": n}) for n in "ab"])
    [step1] = await job_queue.claim("w")
    await job_queue.complete("w", step1.job.id, step1.attempt, None)
    second = first_step.model_copy(update={"current_step": 2, "payload": {"n": 2}})
    await job_queue.submit(second)
    order = [c.job.payload["n"] for c in await job_queue.claim("w", count=10)]
    assert order == [2, "a", "b"], "step 2 of an older workflow goes before younger jobs"


async def test_explicit_workflow_datetime_and_priority_order(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    await job_queue.submit(JobSpec(service_required="sim", payload={"n": "new"}))
    await job_queue.submit(
        JobSpec(service_required="sim", workflow_datetime=1_000, payload={"n": "old-workflow"})
    )
    await job_queue.submit(
        JobSpec(service_required="sim", priority=10, workflow_priority=95, payload={"n": "wf-p"})
    )
    order = [c.job.payload["n"] for c in await job_queue.claim("w", count=10)]
    assert order == ["wf-p", "old-workflow", "new"]


async def test_runnable_job_behind_thousands_of_unrunnable_ones(job_queue: JobQueue) -> None:
    await job_queue.register_worker(
        "big", WorkerCapabilities(services=["sim"], hardware={"gpu_memory_gb": 80})
    )
    await job_queue.register_worker("small", WorkerCapabilities(services=["sim"]))
    heavy = JobSpec(
        service_required="sim", priority=90, requirements={"hardware": {"gpu_memory_gb": 48}}
    )
    await job_queue.submit_many([heavy] * 5000)
    light = await job_queue.submit(JobSpec(service_required="sim", priority=0))
    [claimed] = await job_queue.claim("small")
    assert claimed.job.id == light.id


async def test_submit_is_idempotent_by_id(job_queue: JobQueue, redis_client: Redis) -> None:
    spec = JobSpec(id="client-42", service_required="sim", payload={"v": 1})
    first = await job_queue.submit(spec)
    again = await job_queue.submit(spec.model_copy(update={"payload": {"v": 2}}))
    assert again.id == first.id == "client-42"
    assert again.payload == {"v": 1}
    assert again.seq == first.seq
    assert (await job_queue.stats())["sim"] == {"unworkable": 1}
    batch = await job_queue.submit_many([spec, spec, JobSpec(service_required="sim")])
    assert [job.seq for job in batch[:2]] == [first.seq, first.seq]
    assert await redis_client.get(job_queue.keys.seq) == b"2"


async def test_batch_submit_of_thousands_in_one_call(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    jobs = await job_queue.submit_many(
        [JobSpec(service_required="sim", payload={"n": n}) for n in range(5000)]
    )
    assert len({job.id for job in jobs}) == 5000
    assert all(job.status is JobStatus.PENDING for job in jobs)
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)
    assert (await job_queue.stats())["sim"] == {"pending": 5000}
