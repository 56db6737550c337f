"""The audit log through the API: every operator action and key change, who, what, when and
from where, newest first, admin keys only."""

from __future__ import annotations

import getpass
import socket
import time

import httpx
from redis.asyncio import Redis

from emp_queue.api.key_store import ApiKeyStore, Role, hash_secret
from emp_queue.core.keys import Keys
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import MachineRecord
from emp_queue.models import FailureClass, JobError, JobSpec, WorkerCapabilities
from tests.integration.api.conftest import ApiKeys, bearer

SIM = WorkerCapabilities(services=["sim"])


def key_id(secret: str) -> str:
    return hash_secret(secret)[:12]


async def test_operator_actions_are_recorded_with_who_what_when_and_where(
    admin: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue, redis_client: Redis
) -> None:
    started_ms = int(time.time() * 1000)
    machines = MachineRegistry(redis_client, job_queue.keys, job_queue.events)
    await job_queue.register_worker("w1", SIM, machine_id="box")
    await machines.publish(MachineRecord(machine_id="box", workers=["w1"]))
    doomed = await job_queue.submit(JobSpec(service_required="sim", max_attempts=1))
    [claimed] = await job_queue.claim("w1")
    error = JobError(failure_class=FailureClass.WORKER_FAULT, message="oom")
    await job_queue.fail("w1", claimed.job.id, claimed.attempt, error)
    waiting = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))

    acme = {"Authorization": f"Bearer {api_keys.acme}"}
    assert (await admin.post(f"/api/jobs/{waiting.id}/cancel", headers=acme)).status_code == 200
    assert (await admin.post(f"/api/jobs/{waiting.id}/retry")).status_code == 200
    assert (await admin.post(f"/api/dead-letters/{doomed.id}/requeue")).status_code == 200
    restart = await admin.post("/api/machines/box/services/comfyui-0/restart")
    assert restart.status_code == 202
    assert (await admin.delete("/api/workers/w1")).status_code == 200
    assert (await admin.delete("/api/machines/box")).status_code == 200
    refused = await admin.post(f"/api/jobs/{waiting.id}/retry")  # pending now: 409
    page = (await admin.get("/api/audit")).json()

    actions = [(e["action"], e["target"], e["status"]) for e in page["entries"]]
    assert actions[:7] == [
        ("job.retry", waiting.id, refused.status_code),
        ("machine.remove", "box", 200),
        ("worker.evict", "w1", 200),
        ("service.restart", "box/comfyui-0", 202),
        ("job.requeue", doomed.id, 200),
        ("job.retry", waiting.id, 200),
        ("job.cancel", waiting.id, 200),
    ]
    cancel = page["entries"][6]
    assert (cancel["actor"], cancel["role"]) == (key_id(api_keys.acme), "client")
    assert page["entries"][0]["actor"] == key_id(api_keys.admin)
    assert page["entries"][0]["role"] == "admin"
    assert all(e["source"] == "127.0.0.1" for e in page["entries"][:7])
    assert all(e["ts"] >= started_ms for e in page["entries"][:7])


async def test_key_changes_are_recorded_by_whoever_ran_them(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    issued = await store.create(Role.CLIENT, customer_id="initech", label="initech backend")
    await store.revoke(issued.key.key_id)

    page = (await admin.get("/api/audit", params={"action": "key."})).json()

    revoked, created = page["entries"][:2]
    assert (revoked["action"], revoked["target"]) == ("key.revoke", issued.key.key_id)
    assert (created["action"], created["target"]) == ("key.create", issued.key.key_id)
    assert created["detail"] == {
        "role": "client",
        "customer_id": "initech",
        "label": "initech backend",
        "expires_at_ms": None,
        "access": "full",
        "services": [],
    }
    assert created["actor"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert (created["source"], revoked["source"]) == ("emp keys create", "emp keys revoke")
    assert created["role"] is None
    assert all(e["action"].startswith("key.") for e in page["entries"])


async def test_the_log_pages_newest_first_and_only_admins_read_it(
    admin: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    jobs = [await job_queue.submit(JobSpec(service_required="sim")) for _ in range(5)]
    for job in jobs:
        await admin.post(f"/api/jobs/{job.id}/cancel")

    first = (await admin.get("/api/audit", params={"limit": 3, "action": "job.cancel"})).json()
    rest = (
        await admin.get(
            "/api/audit",
            params={"limit": 3, "action": "job.cancel", "before": first["next_cursor"]},
        )
    ).json()
    as_worker = await admin.get("/api/audit", headers=bearer(api_keys.worker))
    as_client = await admin.get("/api/audit", headers=bearer(api_keys.acme))
    unauthenticated = await admin.post(
        f"/api/jobs/{jobs[0].id}/cancel", headers={"Authorization": "Bearer emp_nope"}
    )
    after = (await admin.get("/api/audit", params={"action": "job.cancel"})).json()

    targets = [e["target"] for e in first["entries"] + rest["entries"]]
    assert targets == [job.id for job in reversed(jobs)]
    assert rest["next_cursor"] is None
    assert (as_worker.status_code, as_client.status_code) == (403, 403)
    # A request nobody could be identified for is refused and leaves no entry to attribute.
    assert unauthenticated.status_code == 401
    assert len(after["entries"]) == 5
