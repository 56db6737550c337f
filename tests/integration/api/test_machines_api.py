"""Machines and logs through the API: list, get, remove (jobs requeued), restart, log search."""

from __future__ import annotations

import json
import time

import httpx
from redis.asyncio import Redis

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import LogLine, MachinePhase, MachineRecord, ServiceState
from emp_queue.models import JobSpec, WorkerCapabilities


def registry(redis: Redis, namespace: str) -> tuple[JobQueue, MachineRegistry]:
    queue = JobQueue(redis, namespace=namespace)
    return queue, MachineRegistry(redis, queue.keys, queue.events)


async def test_machines_are_listed_with_their_services(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    _, machines = registry(redis_client, namespace)
    service = ServiceState(name="comfyui-0", kind="daemon", status="running", port=8188, gpu=0)
    await machines.publish(
        MachineRecord(machine_id="gpu-box", phase=MachinePhase.READY, services=[service])
    )

    listed = (await admin.get("/api/machines")).json()["machines"]
    one = (await admin.get("/api/machines/gpu-box")).json()

    assert [m["machine_id"] for m in listed] == ["gpu-box"]
    assert one["services"][0] == {**service.model_dump(mode="json")}
    assert one["online"] is True
    missing = await admin.get("/api/machines/ghost")
    assert missing.status_code == 404
    assert "ghost" in missing.json()["message"]


async def test_removing_a_machine_requeues_its_jobs(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    queue, machines = registry(redis_client, namespace)
    await queue.register_worker("box-w0", WorkerCapabilities(services=["sim"]), machine_id="box")
    await machines.publish(MachineRecord(machine_id="box", workers=["box-w0"]))
    job = await queue.submit(JobSpec(service_required="sim"))
    await queue.claim("box-w0")

    removed = await admin.delete("/api/machines/box")

    assert removed.json() == {"machine_id": "box", "requeued": 1}
    # Waiting again; "unworkable" because the removed machine was the only one serving "sim".
    assert (await admin.get(f"/api/jobs/{job.id}")).json()["status"] == "unworkable"
    assert (await admin.get("/api/machines")).json()["machines"] == []


async def test_restart_request_reaches_the_agent(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    queue, machines = registry(redis_client, namespace)
    await machines.publish(MachineRecord(machine_id="box"))
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(queue.keys.machine_control("box"))
    await pubsub.get_message(timeout=1)

    answer = await admin.post("/api/machines/box/services/ollama/restart")
    heard = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    await pubsub.aclose()  # type: ignore[no-untyped-call]

    assert answer.status_code == 202
    assert answer.json()["delivered"] == 1
    assert heard is not None
    assert json.loads(heard["data"]) == {"action": "restart_service", "service": "ollama"}


async def test_log_search_filters(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    _, machines = registry(redis_client, namespace)
    await machines.publish(MachineRecord(machine_id="box"))
    now = int(time.time() * 1000)
    await machines.ship_logs(
        [
            LogLine(ts=now, machine_id="box", service="comfyui-0", message="Prompt executed"),
            LogLine(ts=now, machine_id="box", service="ollama", level="error", message="OOM"),
        ]
    )

    found = (await admin.get("/api/logs", params={"q": "prompt"})).json()["lines"]
    errors = (await admin.get("/api/logs", params={"level": "error"})).json()["lines"]
    bad = await admin.get("/api/logs", params={"level": "loud"})

    assert [line["message"] for line in found] == ["Prompt executed"]
    assert [line["service"] for line in errors] == ["ollama"]
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "query.level"
