"""Who may do what: every route for every role, tenant isolation, rate limits, key lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.errors import ConfigurationError
from tests.integration.api.conftest import TEST_SERVICES, ApiKeys, bearer

ROLES = ("admin", "worker", "client", "none")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    expected: dict[str, int]
    body: Any = None


def allowed(admin: int, worker: int, client: int) -> dict[str, int]:
    return {"admin": admin, "worker": worker, "client": client, "none": 401}


PUBLIC = {role: 200 for role in ROLES}
# {job}: a fresh waiting job of customer acme; {done}: a cancelled one.
MATRIX = [
    Route("POST", "/api/jobs", allowed(201, 403, 201), {"service_required": "sim"}),
    Route("POST", "/api/jobs/cancel", allowed(200, 403, 200), {"workflow_id": "wf-none"}),
    Route("DELETE", "/api/jobs/{done}", allowed(200, 403, 200)),
    Route("POST", "/api/customers/c-gone/erase", allowed(200, 403, 403)),
    Route("POST", "/api/jobs/batch", allowed(201, 403, 201), {"jobs": [{"service_required": "s"}]}),
    Route("GET", "/api/jobs", allowed(200, 403, 200)),
    Route("GET", "/api/jobs/{job}", allowed(200, 403, 200)),
    Route("POST", "/api/jobs/{job}/cancel", allowed(200, 403, 200)),
    Route("POST", "/api/jobs/{done}/retry", allowed(200, 403, 403)),
    Route("GET", "/api/jobs/{job}/explain", allowed(200, 403, 200)),
    Route("GET", "/api/jobs/{done}/events", allowed(200, 403, 200)),
    Route("GET", "/api/workflows/wf-acme?customer=acme", allowed(200, 403, 200)),
    Route("GET", "/api/dead-letters", allowed(200, 403, 403)),
    Route("POST", "/api/dead-letters/{job}/requeue", allowed(404, 403, 403)),
    Route("GET", "/api/workers", allowed(200, 200, 403)),
    Route("DELETE", "/api/workers/w-gone", allowed(200, 403, 403)),
    Route("GET", "/api/queues", allowed(200, 200, 403)),
    Route("GET", "/api/pools", allowed(200, 200, 403)),
    Route("POST", "/api/queues/sim/pause", allowed(200, 403, 403)),
    Route("POST", "/api/queues/sim/drain", allowed(200, 403, 403)),
    Route("POST", "/api/queues/sim/resume", allowed(200, 403, 403)),
    Route("POST", "/api/pools/fast/pause", allowed(200, 403, 403)),
    Route("POST", "/api/pools/fast/resume", allowed(200, 403, 403)),
    Route(
        "POST",
        "/api/schedules",
        allowed(201, 403, 201),
        {"cron": "0 9 * * 1-5", "job": {"service_required": "sim", "customer_id": "acme"}},
    ),
    Route("GET", "/api/schedules", allowed(200, 403, 200)),
    Route("GET", "/api/schedules/s-gone", allowed(404, 403, 404)),
    Route("DELETE", "/api/schedules/s-gone", allowed(404, 403, 404)),
    Route("GET", "/api/scaling", allowed(200, 200, 403)),
    Route("GET", "/api/demand", allowed(200, 200, 403)),
    Route("GET", "/api/machines", allowed(200, 200, 403)),
    Route("GET", "/api/machines/m-gone", allowed(404, 404, 403)),
    Route("DELETE", "/api/machines/m-gone", allowed(404, 403, 403)),
    Route("POST", "/api/machines/m-gone/services/svc-0/restart", allowed(404, 403, 403)),
    Route("GET", "/api/logs", allowed(200, 403, 403)),
    Route("GET", "/api/audit", allowed(200, 403, 403)),
    Route("GET", "/api/stats/history", allowed(200, 200, 403)),
    Route("PUT", "/api/customers/acme", allowed(200, 403, 403), {"weight": 2}),
    Route("GET", "/api/customers/acme", allowed(200, 403, 200)),
    Route("GET", "/api/customers", allowed(200, 403, 403)),
    Route("DELETE", "/api/customers/acme", allowed(200, 403, 403)),
    Route("GET", "/api/usage", allowed(200, 403, 200)),
    Route("GET", "/metrics", allowed(200, 200, 403)),
    Route("POST", "/api/webhooks", allowed(201, 403, 201), {"url": "http://93.184.215.14/h"}),
    Route("GET", "/api/webhooks", allowed(200, 403, 200)),
    Route("GET", "/api/webhooks/job-secret", allowed(200, 403, 200)),
    Route("GET", "/api/webhooks/sub_0000000000000000", allowed(404, 403, 404)),
    Route("DELETE", "/api/webhooks/sub_0000000000000000", allowed(404, 403, 404)),
    Route("GET", "/api/webhooks/sub_0000000000000000/deliveries", allowed(404, 403, 404)),
    Route("GET", "/api/jobs/{job}/webhooks", allowed(200, 403, 200)),
    Route("GET", "/api/webhook-deliveries/msg_" + "0" * 32, allowed(404, 403, 404)),
    Route("POST", "/api/webhook-deliveries/msg_" + "0" * 32 + "/redeliver", allowed(404, 403, 404)),
    Route("GET", "/assets/assets/never-stored.png", allowed(404, 404, 404)),
    # Local storage: operators are sent to /assets; a client owns no such output.
    Route("GET", "/api/assets/local/assets/never-stored.png", allowed(307, 307, 404)),
    # No customer named (admin), no file type (client): nothing is stored.
    Route("POST", "/api/uploads", allowed(422, 403, 415)),
    Route("GET", "/health", PUBLIC),
    Route("GET", "/ready", PUBLIC),
    Route("GET", "/version", PUBLIC),
]


async def acme_job(admin_http: httpx.AsyncClient, **extra: Any) -> str:
    body = {"service_required": "sim", "customer_id": "acme", **extra}
    response = await admin_http.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


@pytest.mark.parametrize("route", MATRIX, ids=lambda r: f"{r.method} {r.path}")
async def test_every_role_on_every_route(
    route: Route, client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    # One app and one set of keys per route; fresh jobs for each role, the least privileged
    # first, so what a role changes (a deletion, a new key) is never seen by a later role.
    answers: dict[str, int] = {}
    for role in reversed(ROLES):
        admin_http = httpx.AsyncClient(transport=client._transport, headers=bearer(api_keys.admin))
        async with admin_http:
            admin_http.base_url = client.base_url
            job = await acme_job(admin_http, workflow_id="wf-acme")
            done = await acme_job(admin_http)
            await admin_http.post(f"/api/jobs/{done}/cancel")
        path = route.path.format(job=job, done=done)
        headers = bearer(api_keys.by_role()[role]) if role != "none" else {}

        response = await client.request(route.method, path, json=route.body, headers=headers)

        answers[role] = response.status_code
        if response.status_code >= 400:
            assert response.json()["error"], (role, response.text)
    assert answers == route.expected


def test_the_matrix_covers_every_route(app: FastAPI) -> None:
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    placeholders = {
        "{job}": "{job_id}",
        "{done}": "{job_id}",
        "wf-acme?customer=acme": "{workflow_id}",
        "assets/never-stored.png": "{bucket}/{key}",
    }
    covered = set()
    for entry in MATRIX:
        path = entry.path.replace("w-gone", "{worker_id}").replace("m-gone", "{machine_id}")
        path = path.replace("svc-0", "{service}").replace("sub_" + "0" * 16, "{subscription_id}")
        path = path.replace("msg_" + "0" * 32, "{delivery_id}")
        path = path.replace("customers/acme", "customers/{customer_id}")
        path = path.replace("c-gone", "{customer_id}")
        path = path.replace("/api/assets/local/", "/api/assets/{provider}/")
        path = path.replace("queues/sim/", "queues/{service}/").replace(
            "pools/fast/", "pools/{pool}/"
        )
        path = path.replace("s-gone", "{schedule_id}")
        for placeholder, parameter in placeholders.items():
            path = path.replace(placeholder, parameter)
        covered.add((entry.method, path))

    assert routes == covered


async def test_a_client_never_sees_another_customers_job(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    globex = bearer(api_keys.globex)
    acme = bearer(api_keys.acme)
    theirs = await client.post("/api/jobs", json={"service_required": "sim"}, headers=globex)
    theirs_id = theirs.json()["id"]
    mine = (await client.post("/api/jobs", json={"service_required": "sim"}, headers=acme)).json()

    assert theirs.json()["customer_id"] == "globex"
    assert mine["customer_id"] == "acme"
    for method, path in [
        ("GET", f"/api/jobs/{theirs_id}"),
        ("GET", f"/api/jobs/{theirs_id}/explain"),
        ("GET", f"/api/jobs/{theirs_id}/events"),
        ("POST", f"/api/jobs/{theirs_id}/cancel"),
    ]:
        response = await client.request(method, path, headers=acme)
        unknown = await client.request(method, path.replace(theirs_id, "no-such-job"), headers=acme)
        assert response.status_code == 404, path
        assert response.json()["message"] == unknown.json()["message"].replace(
            "no-such-job", theirs_id
        )
    listed = (await client.get("/api/jobs", headers=acme)).json()["jobs"]
    assert [job["id"] for job in listed] == [mine["id"]]
    other_customer = await client.get("/api/jobs", params={"customer": "globex"}, headers=acme)
    assert other_customer.status_code == 403
    still_pending = await client.get(f"/api/jobs/{theirs_id}", headers=globex)
    assert still_pending.json()["status"] != "cancelled"


async def test_a_client_cannot_submit_for_another_customer_or_take_its_ids(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    acme = bearer(api_keys.acme)
    await client.post(
        "/api/jobs",
        json={"id": "shared", "service_required": "sim"},
        headers=bearer(api_keys.globex),
    )

    foreign = await client.post(
        "/api/jobs", json={"service_required": "sim", "customer_id": "globex"}, headers=acme
    )
    taken = await client.post(
        "/api/jobs", json={"id": "shared", "service_required": "sim"}, headers=acme
    )

    assert foreign.status_code == 403
    assert taken.status_code == 409
    assert "globex" not in taken.text


async def test_a_workflow_shows_a_client_only_its_own_steps(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    step = {"service_required": "sim", "workflow_id": "wf-g"}
    await client.post("/api/jobs", json=step, headers=bearer(api_keys.globex))

    response = await client.get("/api/workflows/wf-g", headers=bearer(api_keys.acme))

    assert response.status_code == 404


async def test_missing_malformed_unknown_and_revoked_keys_are_401(
    client: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    issued = await store.create(Role.ADMIN)
    assert (await client.get("/api/queues", headers=bearer(issued.secret))).status_code == 200

    await store.revoke(issued.key.key_id)

    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("emp_not-a-key"),
        bearer(issued.secret),
    ):
        response = await client.get("/api/queues", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_keys_are_stored_hashed(redis_client: Redis, namespace: str) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    issued = await store.create(Role.CLIENT, customer_id="acme", label="ci")

    dump = [
        value
        async for key in redis_client.scan_iter(match=Keys(namespace).prefix + "api:*")
        for value in (await redis_client.hgetall(key)).values()
    ]
    listed = await store.list()

    assert issued.secret.encode() not in dump
    assert [(k.key_id, k.role, k.customer_id, k.label) for k in listed] == [
        (issued.key.key_id, Role.CLIENT, "acme", "ci")
    ]


async def test_rate_limit_answers_429_with_retry_after(
    core_settings: CoreSettings, redis_client: Redis, api_keys: ApiKeys
) -> None:
    settings = ApiSettings(
        services=TEST_SERVICES, rate_limit_per_s=1, rate_limit_burst=5, sweep_interval_s=None
    )
    app = create_app(settings, core_settings, redis_client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        statuses = [
            (await http.get("/api/queues", headers=bearer(api_keys.admin))).status_code
            for _ in range(8)
        ]
        limited = await http.get("/api/queues", headers=bearer(api_keys.admin))
        other_key = await http.get("/api/queues", headers=bearer(api_keys.worker))

    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    assert limited.status_code == 429
    assert limited.json()["error"] == "too_many_requests"
    assert 1 <= int(limited.headers["Retry-After"]) <= 5
    assert other_key.status_code == 200


async def test_dev_anonymous_acts_as_admin_on_loopback_only(
    core_settings: CoreSettings, redis_client: Redis
) -> None:
    settings = ApiSettings(services=TEST_SERVICES, dev_anonymous=True, sweep_interval_s=None)
    app = create_app(settings, core_settings, redis_client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        response = await http.get("/api/dead-letters")

    assert response.status_code == 200
    with pytest.raises(ConfigurationError, match=r"EMP_API_HOST='0\.0\.0\.0'"):
        ApiSettings(services=TEST_SERVICES, dev_anonymous=True, host="0.0.0.0")


async def test_a_revoked_key_stops_working_within_the_key_cache_time(
    core_settings: CoreSettings, redis_client: Redis, namespace: str
) -> None:
    settings = ApiSettings(
        services=TEST_SERVICES, rate_limit_per_s=None, sweep_interval_s=None, key_cache_s=0.3
    )
    app = create_app(settings, core_settings, redis_client)
    store = ApiKeyStore(redis_client, Keys(namespace))
    issued = await store.create(Role.ADMIN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        headers = bearer(issued.secret)
        assert (await http.get("/api/queues", headers=headers)).status_code == 200
        await store.revoke(issued.key.key_id)
        assert (await http.get("/api/queues", headers=headers)).status_code == 200, "cached"
        await asyncio.sleep(0.35)
        assert (await http.get("/api/queues", headers=headers)).status_code == 401
