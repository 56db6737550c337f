"""Keys narrowed within their role: read-only, submit-only, limited to services — over REST,
the client WebSocket and `emp keys`."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from emp_queue.api.key_scope import Access
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.cli.main import app
from emp_queue.core.keys import Keys
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec
from tests.integration.api.conftest import bearer
from tests.integration.api.test_websockets import client_url, receive, send


async def test_a_read_only_key_reads_and_changes_nothing(
    client: httpx.AsyncClient, redis_client: Redis, namespace: str, job_queue: JobQueue
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    reader = await store.create(Role.ADMIN, access=Access.READ)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    headers = bearer(reader.secret)

    listed = await client.get("/api/jobs", headers=headers)
    submitted = await client.post("/api/jobs", json={"service_required": "sim"}, headers=headers)
    cancelled = await client.post(f"/api/jobs/{job.id}/cancel", headers=headers)

    assert listed.status_code == 200
    assert submitted.status_code == 403
    assert "access is 'read'" in submitted.json()["message"]
    assert cancelled.status_code == 403
    assert (await job_queue.get(job.id)).status != "cancelled"


async def test_a_submit_only_key_submits_for_its_services_only(
    client: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    submitter = await store.create(
        Role.CLIENT, customer_id="acme", access=Access.SUBMIT, services=("sim",)
    )
    headers = bearer(submitter.secret)

    ok = await client.post("/api/jobs", json={"service_required": "sim"}, headers=headers)
    other = await client.post("/api/jobs", json={"service_required": "other"}, headers=headers)
    batch = await client.post(
        "/api/jobs/batch", json={"jobs": [{"service_required": "other"}]}, headers=headers
    )
    cancel = await client.post(f"/api/jobs/{ok.json()['id']}/cancel", headers=headers)
    read = await client.get(f"/api/jobs/{ok.json()['id']}", headers=headers)

    assert ok.status_code == 201, ok.text
    assert other.status_code == 403
    assert "submits jobs for sim only, not 'other'" in other.json()["message"]
    assert batch.status_code == 403
    assert cancel.status_code == 403
    assert read.status_code == 200


async def test_the_client_socket_keeps_to_the_keys_access(
    live_url: str, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    reader = await store.create(Role.CLIENT, customer_id="acme", access=Access.READ)
    limited = await store.create(Role.CLIENT, customer_id="acme", services=("sim",))
    async with connect(client_url(live_url, reader.secret)) as ws:
        await receive(ws)  # connection_established
        await send(ws, "submit_job", service_required="sim", message_id="r-1")
        refused = await receive(ws)
        await send(ws, "heartbeat")
        acknowledged = await receive(ws)
    async with connect(client_url(live_url, limited.secret, name="c2")) as ws:
        await receive(ws)
        await send(ws, "submit_job", service_required="other", message_id="l-1")
        wrong_service = await receive(ws)

    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert acknowledged["type"] == "heartbeat_ack"
    assert (wrong_service["type"], wrong_service["code"]) == ("error", "forbidden")


def test_emp_keys_creates_and_lists_scoped_keys(redis_url: str, namespace: str) -> None:
    env = {"EMP_REDIS_URL": redis_url, "EMP_NAMESPACE": namespace, "COLUMNS": "200"}
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["keys", "create", "--role", "client", "--customer", "acme", "--access", "submit",
         "--service", "comfyui", "--service", "ollama"],
        env=env,
    )  # fmt: skip
    listed = runner.invoke(app, ["keys", "list"], env=env)

    assert created.exit_code == 0, created.output
    assert "submit (comfyui, ollama)" in listed.output
