"""Machine records, log streams, control and removal, against real Redis."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from emp_queue.core.machines import MachineNotFoundError, MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import LogLine, MachinePhase, MachineRecord
from emp_queue.models import EventType, JobSpec, JobStatus, WorkerCapabilities


@pytest.fixture
def machines(job_queue: JobQueue) -> MachineRegistry:
    return MachineRegistry(job_queue.redis, job_queue.keys, job_queue.events, timeout_s=0.5)


async def test_published_record_is_listed_and_announced(
    machines: MachineRegistry, job_queue: JobQueue
) -> None:
    start = await job_queue.events.latest_id()
    await machines.publish(MachineRecord(machine_id="m1", phase=MachinePhase.READY))
    listed = await machines.all()
    assert [m.machine_id for m in listed] == ["m1"]
    assert listed[0].online
    events = await job_queue.events.read(start)
    assert [e.type for e in events] == ["machine_update"]
    assert events[0].data["machine"]["phase"] == "ready"


async def test_silent_or_stopped_machine_is_offline(machines: MachineRegistry) -> None:
    await machines.publish(MachineRecord(machine_id="quiet"))
    await machines.publish(MachineRecord(machine_id="done", phase=MachinePhase.STOPPED))
    assert not (await machines.get("done")).online
    await asyncio.sleep(0.6)
    assert not (await machines.get("quiet")).online


async def test_unknown_machine_is_an_error(machines: MachineRegistry) -> None:
    with pytest.raises(MachineNotFoundError, match="ghost"):
        await machines.get("ghost")


async def test_logs_filter_by_service_level_text_and_time(machines: MachineRegistry) -> None:
    await machines.publish(MachineRecord(machine_id="a"))
    await machines.publish(MachineRecord(machine_id="b"))
    now = int(time.time() * 1000)
    await machines.ship_logs(
        [
            LogLine(ts=now - 5000, machine_id="a", service="comfyui-0", message="old line"),
            LogLine(ts=now, machine_id="a", service="comfyui-0", level="error", message="CUDA OOM"),
            LogLine(ts=now + 1, machine_id="b", service="ollama", message="loaded llama3"),
        ]
    )
    everything = await machines.logs()
    assert [line.message for line in everything] == ["old line", "CUDA OOM", "loaded llama3"]
    assert [x.message for x in await machines.logs(service="ollama")] == ["loaded llama3"]
    assert [x.message for x in await machines.logs(level="error")] == ["CUDA OOM"]
    assert [x.message for x in await machines.logs(text="cuda")] == ["CUDA OOM"]
    assert [x.message for x in await machines.logs(machine_ids=["b"])] == ["loaded llama3"]
    recent = await machines.logs(since_ms=now - 1000)
    assert [x.message for x in recent] == ["CUDA OOM", "loaded llama3"]
    assert [x.message for x in await machines.logs(limit=1)] == ["loaded llama3"]


async def test_control_reaches_the_agent(machines: MachineRegistry, job_queue: JobQueue) -> None:
    await machines.publish(MachineRecord(machine_id="m1"))
    pubsub = job_queue.redis.pubsub()
    await pubsub.subscribe(job_queue.keys.machine_control("m1"))
    await pubsub.get_message(timeout=1)
    heard = await machines.send_control("m1", {"action": "restart_service", "service": "ollama"})
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert heard == 1
    assert message is not None
    assert json.loads(message["data"]) == {"action": "restart_service", "service": "ollama"}


async def test_removing_a_machine_requeues_its_running_jobs_at_once(
    machines: MachineRegistry, job_queue: JobQueue
) -> None:
    caps = WorkerCapabilities(services=["sim"])
    await job_queue.register_worker("m1-w0", caps, machine_id="m1")
    await job_queue.register_worker("elsewhere", caps, machine_id="m2")
    await machines.publish(MachineRecord(machine_id="m1", workers=["m1-w0"]))
    job = await job_queue.submit(JobSpec(service_required="sim"))
    [claimed] = await job_queue.claim("m1-w0")
    assert claimed.job.id == job.id

    requeued = await machines.remove("m1", job_queue)

    assert requeued == 1
    assert (await job_queue.get(job.id)).status == JobStatus.PENDING
    latest = await job_queue.events.read("0", count=10_000)
    assert latest[-1].type == EventType.MACHINE_SHUTDOWN
    assert await job_queue.live_workers() == ["elsewhere"]
    [again] = await job_queue.claim("elsewhere")
    assert again.job.id == job.id
    with pytest.raises(MachineNotFoundError):
        await machines.get("m1")
