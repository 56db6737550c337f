"""The event stream: every transition in order, resumable by id, followable live."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.events import Event

SIM = WorkerCapabilities(services=["sim"])


async def test_a_job_life_is_told_in_order(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    [claimed] = await job_queue.claim("w1")
    await job_queue.report_progress("w1", job.id, claimed.attempt, 25.0, "sampling")
    await job_queue.report_progress("w1", job.id, claimed.attempt, 75.0)
    await job_queue.complete("w1", job.id, claimed.attempt, {"images": 1})

    events = [e for e in await job_queue.events.read() if e.job_id == job.id]

    assert [e.type for e in events] == [
        "job_submitted",
        "job_assigned",
        "job_status_changed",
        "update_job_progress",
        "update_job_progress",
        "complete_job",
    ]
    submitted, assigned, started, first, second, completed = events
    assert submitted.data["status"] == "pending"
    assert (assigned.data["worker_id"], assigned.data["attempt"]) == ("w1", 1)
    assert started.data["status"] == "in_progress"
    assert (first.data["progress"], first.data["message"]) == (25.0, "sampling")
    assert second.data["progress"] == 75.0
    assert completed.data["worker_id"] == "w1"
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def test_resuming_reader_sees_no_gap_and_no_duplicate(
    job_queue: JobQueue, redis_client: Redis, namespace: str
) -> None:
    submitted: list[str] = []
    seen: list[Event] = []
    cursor = "0-0"
    for round_number in range(20):
        jobs = await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(3)])
        submitted += [j.id for j in jobs]
        # Each round a new reader (a reconnecting client) resumes from the last id it saw.
        reader = JobQueue(redis_client, namespace=namespace).events
        batch = await reader.read(after=cursor, count=2 + round_number % 4)
        seen += batch
        if batch:
            cursor = batch[-1].id
    while batch := await job_queue.events.read(after=cursor, count=5):
        seen += batch
        cursor = batch[-1].id

    assert [e.job_id for e in seen] == submitted
    assert len({e.id for e in seen}) == len(seen)
    assert [e.id for e in seen] == [e.id for e in await job_queue.events.read()]


async def test_follow_yields_events_as_they_happen(job_queue: JobQueue) -> None:
    await job_queue.submit(JobSpec(service_required="sim", id="before"))
    follower = job_queue.events.follow(after=await job_queue.events.latest_id(), block_ms=2000)
    assert isinstance(follower, AsyncGenerator)
    waiting = asyncio.create_task(anext(follower))
    try:
        await asyncio.sleep(0.05)
        assert not waiting.done(), "follow yielded an event from before it started"

        await job_queue.submit(JobSpec(service_required="sim", id="first"))
        async with asyncio.timeout(1):
            first = await waiting
        await job_queue.submit(JobSpec(service_required="sim", id="second"))
        async with asyncio.timeout(1):
            second = await anext(follower)
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await follower.aclose()

    assert (first.type, first.job_id) == ("job_submitted", "first")
    assert (second.type, second.job_id) == ("job_submitted", "second")
