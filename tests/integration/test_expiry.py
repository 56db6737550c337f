"""Bounded memory: queue TTL expiry, retention of finished jobs, trimmed event stream."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from emp_queue import JobNotFoundError, JobQueue, JobSpec, JobStatus, WorkerCapabilities

SIM = WorkerCapabilities(services=["sim"])


async def test_waiting_job_expires_after_its_queue_ttl(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    short = await job_queue.submit(JobSpec(service_required="sim", queue_ttl_s=0.2))
    patient = await job_queue.submit(JobSpec(service_required="sim", queue_ttl_s=60))
    assert (await job_queue.sweep()).expired == 0

    await asyncio.sleep(0.25)
    report = await job_queue.sweep()

    assert report.expired == 1
    expired = await job_queue.get(short.id)
    assert expired.status is JobStatus.EXPIRED
    assert expired.finished_at is not None
    assert (await job_queue.stats())["sim"] == {"expired": 1, "pending": 1}
    [claimed] = await job_queue.claim("w1", count=2)
    assert claimed.job.id == patient.id
    event = [e for e in await job_queue.events.read() if e.job_id == short.id][-1]
    assert (event.type, event.data["status"], event.data["reason"]) == (
        "job_status_changed",
        "expired",
        "queue_ttl",
    )


async def test_claimed_job_does_not_expire(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim", queue_ttl_s=0.2))
    [claimed] = await job_queue.claim("w1")

    await asyncio.sleep(0.25)
    assert (await job_queue.sweep()).expired == 0

    assert (await job_queue.get(job.id)).status is JobStatus.ASSIGNED
    await job_queue.complete("w1", job.id, claimed.attempt, "in time")
    assert (await job_queue.get(job.id)).status is JobStatus.COMPLETED


async def test_finished_job_is_purged_after_retention(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(redis_client, namespace=namespace, retention_s=0.3)
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [claimed] = await queue.claim("w1")
    await queue.complete("w1", job.id, claimed.attempt, "result")

    assert (await queue.get(job.id)).result == "result"
    assert (await queue.sweep()).purged == 0
    assert (await queue.stats())["sim"] == {"completed": 1}

    await asyncio.sleep(0.35)
    report = await queue.sweep()

    assert report.purged == 1
    with pytest.raises(JobNotFoundError, match=job.id):
        await queue.get(job.id)
    assert "sim" not in await queue.stats()
    assert await redis_client.exists(queue.keys.job(job.id)) == 0
    assert await redis_client.zscore(queue.keys.terminal, job.id) is None
    assert (await queue.sweep()).purged == 0


async def test_purged_dead_letter_leaves_the_dead_letter_list(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(
        redis_client, namespace=namespace, retention_s=0.3, lease_s=0.1, max_lost_leases=1
    )
    await queue.register_worker("w1", SIM)
    job = await queue.submit(JobSpec(service_required="sim", max_attempts=1))
    await queue.claim("w1")
    await asyncio.sleep(0.15)
    assert (await queue.sweep()).dead_lettered == 1
    assert [j.id for j in await queue.dead_letters()] == [job.id]

    await asyncio.sleep(0.35)
    assert (await queue.sweep()).purged == 1

    assert await queue.dead_letters() == []
    assert await redis_client.zcard(queue.keys.dead) == 0


async def test_event_stream_stays_bounded(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(redis_client, namespace=namespace, events_maxlen=50)

    jobs = await queue.submit_many([JobSpec(service_required="sim") for _ in range(2000)])

    length = await redis_client.xlen(queue.keys.events)
    assert length < 300, f"{length} events kept with events_maxlen=50"
    kept = await queue.events.read()
    assert len(kept) == length
    assert [e.job_id for e in kept] == [j.id for j in jobs[-length:]], "the newest are kept"
