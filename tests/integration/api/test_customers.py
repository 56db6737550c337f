"""Customer policies over the API: admins set them, clients read their own, caps answer 429
on REST, batch and WebSocket submits, and explain names a running cap."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.api.app import create_app
from emp_queue.api.settings import ApiSettings
from emp_queue.core.settings import CoreSettings
from tests.integration.api.conftest import TEST_SERVICES, ApiKeys, bearer
from tests.integration.api.test_websockets import client_socket, receive, send

POLICY = {"weight": 2, "max_running": 1, "max_running_by_service": {"sim": 1}, "max_pending": 2}


async def test_admin_sets_and_reads_a_policy_client_reads_its_own_only(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    admin, acme = bearer(api_keys.admin), bearer(api_keys.acme)
    put = await client.put("/api/customers/acme", json=POLICY, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["policy"] == {**POLICY, "weight": 2.0}
    assert (await client.get("/api/customers", headers=admin)).json()[0]["customer_id"] == "acme"
    own = await client.get("/api/customers/acme", headers=acme)
    assert own.json()["policy"]["max_pending"] == 2
    other = await client.get("/api/customers/globex", headers=acme)
    assert other.status_code == 403
    refused = await client.put("/api/customers/acme", json={"weight": 9}, headers=acme)
    assert refused.status_code == 403
    bad = await client.put("/api/customers/acme", json={"weight": 0}, headers=admin)
    assert bad.status_code == 422
    unknown = await client.put("/api/customers/acme", json={"wieght": 1}, headers=admin)
    assert unknown.status_code == 422
    gone = await client.delete("/api/customers/acme", headers=admin)
    assert gone.json()["has_policy"] is False


async def test_waiting_cap_answers_429_on_rest_and_batch(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    await client.put("/api/customers/acme", json={"max_pending": 2}, headers=bearer(api_keys.admin))
    acme = bearer(api_keys.acme)
    job = {"service_required": "sim"}
    batch = await client.post("/api/jobs/batch", json={"jobs": [job] * 3}, headers=acme)
    assert batch.status_code == 429
    assert batch.json()["error"] == "customer_cap"
    assert "3 more would pass its cap of 2" in batch.json()["message"]
    for _ in range(2):
        assert (await client.post("/api/jobs", json=job, headers=acme)).status_code == 201
    over = await client.post("/api/jobs", json=job, headers=acme)
    assert over.status_code == 429
    assert "'acme' is at its cap of 2 waiting jobs" in over.json()["message"]
    other = await client.post("/api/jobs", json=job, headers=bearer(api_keys.globex))
    assert other.status_code == 201


async def test_waiting_cap_answers_an_error_on_the_websocket(
    client: httpx.AsyncClient, live_url: str, api_keys: ApiKeys
) -> None:
    await client.put("/api/customers/acme", json={"max_pending": 1}, headers=bearer(api_keys.admin))
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "submit_job", job_type="sim", message_id="m1")
        assert (await receive(ws))["type"] == "job_submitted"
        await send(ws, "submit_job", job_type="sim", message_id="m2")
        error = await receive(ws)
    assert error["type"] == "error"
    assert error["code"] == "customer_cap"
    assert error["message_id"] == "m2"
    assert "cap of 1 waiting jobs" in error["error"]


async def test_explain_names_the_running_cap(
    client: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await client.put("/api/customers/acme", json={"max_running": 1}, headers=bearer(api_keys.admin))
    await job_queue.register_worker("w", WorkerCapabilities(services=["sim"]))
    first, second = await job_queue.submit_many(
        [JobSpec(service_required="sim", customer_id="acme") for _ in range(2)]
    )
    claimed = await job_queue.claim("w", count=2)
    assert [c.job.id for c in claimed] == [first.id]
    acme = bearer(api_keys.acme)
    waiting = (await client.get(f"/api/jobs/{second.id}/explain", headers=acme)).json()
    assert waiting["customer_cap"] == "customer acme is at its cap of 1 running jobs"
    running = (await client.get(f"/api/jobs/{first.id}/explain", headers=acme)).json()
    assert running["customer_cap"] is None
    assert running["pool"] is None  # only a waiting job has a pool to explain
    assert waiting["pool"]["decided_by"] == "unmeasured"  # its class has no run time yet
    assert "no pool" in waiting["pool"]["summary"]


async def test_usage_a_client_sees_its_own_customer_only(
    client: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w", WorkerCapabilities(services=["sim"]))
    await job_queue.submit_many(
        [JobSpec(service_required="sim", customer_id=c) for c in ("acme", "globex")]
    )
    for claimed in await job_queue.claim("w", count=2):
        await job_queue.complete("w", claimed.job.id, claimed.attempt, None)
    admin = (await client.get("/api/usage", headers=bearer(api_keys.admin))).json()
    assert sorted(r["customer_id"] for r in admin["rows"]) == ["acme", "globex"]
    own = (await client.get("/api/usage", headers=bearer(api_keys.acme))).json()
    assert [r["customer_id"] for r in own["rows"]] == ["acme"]
    other = await client.get("/api/usage?customer=globex", headers=bearer(api_keys.acme))
    assert other.status_code == 403
    backwards = await client.get("/api/usage?from=10&to=5", headers=bearer(api_keys.admin))
    assert backwards.status_code == 422
    assert backwards.json()["error"] == "invalid_query"


async def test_metrics_per_customer_and_the_switch(
    core_settings: CoreSettings, redis_client: Redis, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker(
        "w", WorkerCapabilities(services=["sim"], hardware={"gpu_count": 4})
    )
    await job_queue.submit_many(
        [JobSpec(service_required="sim", customer_id=c) for c in ("acme", "acme", "globex")]
    )
    first, second = await job_queue.claim("w", count=2)
    await job_queue.complete("w", first.job.id, first.attempt, None)

    async def scrape(per_customer: bool) -> set[str]:
        settings = ApiSettings(
            services=TEST_SERVICES, sweep_interval_s=None, metrics_per_customer=per_customer
        )
        app = create_app(settings, core_settings, redis_client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=bearer(api_keys.admin)
        ) as http:
            text = (await http.get("/metrics")).text
        return {line for line in text.splitlines() if line.startswith("emp_customer")}

    lines = await scrape(True)
    # Fair share gave the second job to globex; acme's second job waits.
    assert [first.job.customer_id, second.job.customer_id] == ["acme", "globex"]
    assert {
        'emp_customer_jobs_running{customer="globex"} 1.0',
        'emp_customer_jobs_waiting{customer="acme"} 1.0',
        'emp_customer_attempts_total{customer="acme"} 1.0',
        'emp_customer_completed_total{customer="acme"} 1.0',
    } <= lines
    [gpu] = [line for line in lines if line.startswith("emp_customer_gpu_seconds_total")]
    [run] = [line for line in lines if line.startswith("emp_customer_run_seconds_total")]
    assert float(gpu.split()[-1]) == 4 * float(run.split()[-1])
    assert await scrape(False) == set()
