"""The workers registry: joining, changing, leaving, and going silent."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from emp_queue import (
    JobQueue,
    JobSpec,
    JobStatus,
    WorkerCapabilities,
    WorkerNotRegisteredError,
)
from emp_queue.core.events import Event

SIM = WorkerCapabilities(services=["sim"])


async def worker_events(queue: JobQueue, worker_id: str) -> list[Event]:
    return [e for e in await queue.events.read() if e.data.get("worker_id") == worker_id]


async def test_register_announces_the_worker(job_queue: JobQueue) -> None:
    assert await job_queue.register_worker("w1", SIM, machine_id="m1") is True

    assert await job_queue.live_workers() == ["w1"]
    [event] = await worker_events(job_queue, "w1")
    assert event.type == "worker_connected"
    assert event.data["machine_id"] == "m1"
    assert event.data["services"] == ["sim"]


async def test_reregister_with_new_capabilities_is_a_status_change(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)

    changed = WorkerCapabilities(services=["sim", "comfyui"])
    assert await job_queue.register_worker("w1", changed) is False

    assert await job_queue.live_workers() == ["w1"]
    connected, updated = await worker_events(job_queue, "w1")
    assert connected.type == "worker_connected"
    assert updated.type == "worker_status_changed"
    assert updated.data["capabilities_changed"] is True
    job = await job_queue.submit(JobSpec(service_required="comfyui"))
    assert job.status is JobStatus.PENDING, "the new capabilities are not matched"
    [claimed] = await job_queue.claim("w1")
    assert claimed.job.id == job.id


async def test_deregister_announces_the_departure(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    await job_queue.register_worker("w2", SIM)

    assert await job_queue.deregister_worker("w1", reason="shutdown") is True

    assert await job_queue.live_workers() == ["w2"]
    event = (await worker_events(job_queue, "w1"))[-1]
    assert (event.type, event.data["reason"]) == ("worker_disconnected", "shutdown")
    assert await job_queue.deregister_worker("w1") is False
    with pytest.raises(WorkerNotRegisteredError, match="w1"):
        await job_queue.claim("w1")


async def test_silent_worker_is_removed_and_its_job_comes_back(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(redis_client, namespace=namespace, lease_s=0.6, worker_timeout_s=0.3)
    await queue.register_worker("silent", SIM)
    await queue.register_worker("alive", SIM)
    job = await queue.submit(JobSpec(service_required="sim"))
    [lost] = await queue.claim("silent")

    await asyncio.sleep(0.4)  # past the worker timeout, inside the lease
    await queue.heartbeat("alive")
    report = await queue.sweep()

    assert (report.workers_removed, report.requeued) == (1, 0)
    assert await queue.live_workers() == ["alive"]
    event = (await worker_events(queue, "silent"))[-1]
    assert (event.type, event.data["reason"]) == ("worker_disconnected", "heartbeat_timeout")
    with pytest.raises(WorkerNotRegisteredError):
        await queue.claim("silent")
    with pytest.raises(WorkerNotRegisteredError):
        await queue.heartbeat("silent")

    await asyncio.sleep(0.25)  # past the lease
    await queue.heartbeat("alive")
    report = await queue.sweep()

    assert (report.workers_removed, report.requeued) == (0, 1)
    [retaken] = await queue.claim("alive")
    assert retaken.job.id == job.id
    assert retaken.attempt == lost.attempt + 1


async def test_claim_by_an_unknown_worker_is_refused(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))

    with pytest.raises(WorkerNotRegisteredError, match="ghost"):
        await job_queue.claim("ghost")

    assert (await job_queue.get(job.id)).status is JobStatus.PENDING
    [claimed] = await job_queue.claim("w1")
    assert claimed.job.id == job.id


async def test_heartbeat_reports_a_status_change_once(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)

    await job_queue.heartbeat("w1", status="busy")
    await job_queue.heartbeat("w1", status="busy")
    await job_queue.heartbeat("w1")

    changes = [e for e in await worker_events(job_queue, "w1") if e.type != "worker_connected"]
    assert [(e.type, e.data["status"], e.data["previous"]) for e in changes] == [
        ("worker_status_changed", "busy", "idle")
    ]
