"""Concurrent single submits share one script run, and each caller still gets its own job."""

import asyncio

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from emp_queue import JobQueue, JobSpec
from emp_queue.core.broker import connect
from emp_queue.errors import UnknownRequirementError


async def test_concurrent_submits_are_stored_by_one_run_and_each_caller_gets_its_job(
    job_queue: JobQueue, redis_client: Redis
) -> None:
    async with redis_client.pubsub() as notices:
        # Every script run that emits events publishes one notice (finish_run, transitions.lua).
        await notices.subscribe(job_queue.keys.events_channel)
        specs = [JobSpec(service_required="sim", payload={"n": n}) for n in range(40)]
        jobs = await asyncio.gather(*(job_queue.submit(spec) for spec in specs))
        received = []
        deadline = asyncio.get_running_loop().time() + 0.5
        while asyncio.get_running_loop().time() < deadline:
            message = await notices.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                received.append(message)
    assert [job.payload for job in jobs] == [{"n": n} for n in range(40)]
    assert len({job.id for job in jobs}) == 40
    assert [job.seq for job in jobs] == sorted(job.seq for job in jobs)
    assert {job.status for job in jobs} == {(await job_queue.get(jobs[0].id)).status}
    assert [stored.payload for stored in await job_queue.get_many([j.id for j in jobs])] == [
        {"n": n} for n in range(40)
    ]
    assert len(received) == 1


async def test_a_bad_spec_fails_its_own_caller_only(job_queue: JobQueue) -> None:
    good = JobSpec(service_required="sim")
    bad = JobSpec(service_required="sim", requirements={"gpu": 1})
    outcomes = await asyncio.gather(
        job_queue.submit(good), job_queue.submit(bad), job_queue.submit(good.model_copy()),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(outcomes[1], UnknownRequirementError)
    assert [type(outcome).__name__ for outcome in (outcomes[0], outcomes[2])] == ["Job", "Job"]


async def test_the_same_id_submitted_twice_at_once_is_one_job(job_queue: JobQueue) -> None:
    first, second = await asyncio.gather(
        job_queue.submit(JobSpec(id="twice", service_required="sim", payload={"v": 1})),
        job_queue.submit(JobSpec(id="twice", service_required="sim", payload={"v": 2})),
    )
    assert first.id == second.id == "twice"
    assert first.payload == second.payload == {"v": 1}
    assert first.seq == second.seq
    page = await job_queue.list_jobs()
    assert [job.id for job in page.jobs] == ["twice"]


async def test_a_redis_outage_fails_every_waiting_submit(namespace: str) -> None:
    redis = connect("redis://127.0.0.1:1/0")  # nothing listens on port 1
    queue = JobQueue(redis, namespace=namespace)
    try:
        outcomes = await asyncio.gather(
            *(queue.submit(JobSpec(service_required="sim")) for _ in range(3)),
            return_exceptions=True,
        )
    finally:
        await redis.aclose()
    assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
