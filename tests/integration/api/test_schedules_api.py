"""Schedules through the API, the SDK's CLI and a running API's loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys
from tests.integration.api.conftest import ApiKeys, bearer
from tests.integration.api.threaded_api import RunningApi, emp_against, threaded_api

SPEC = {"cron": "*/10 * * * *", "job": {"service_required": "sim", "payload": {"a": 1}}}


async def test_a_client_key_owns_its_schedules(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    acme, globex = bearer(api_keys.acme), bearer(api_keys.globex)
    created = await client.post("/api/schedules", json={**SPEC, "id": "nightly"}, headers=acme)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["customer_id"] == "acme"
    assert body["job"]["customer_id"] == "acme"
    assert body["next_tick_ms"] % 600_000 == 0

    again = await client.post("/api/schedules", json={**SPEC, "id": "nightly"}, headers=acme)
    assert again.status_code == 409
    assert (await client.get("/api/schedules/nightly", headers=globex)).status_code == 404
    assert (await client.get("/api/schedules", headers=globex)).json()["schedules"] == []
    assert (await client.delete("/api/schedules/nightly", headers=globex)).status_code == 404
    [listed] = (await client.get("/api/schedules", headers=acme)).json()["schedules"]
    assert listed["id"] == "nightly"

    deleted = await client.delete("/api/schedules/nightly", headers=acme)
    assert deleted.json() == {"schedule_id": "nightly", "deleted": True}
    actions = [
        e["action"]
        for e in (await client.get("/api/audit", headers=bearer(api_keys.admin))).json()["entries"]
    ]
    assert {"schedule.create", "schedule.delete"} <= set(actions)


async def test_bad_schedules_answer_422(client: httpx.AsyncClient, api_keys: ApiKeys) -> None:
    admin = bearer(api_keys.admin)
    bad_cron = await client.post(
        "/api/schedules", json={**SPEC, "cron": "61 * * * *"}, headers=admin
    )
    assert bad_cron.status_code == 422
    assert "five fields" in bad_cron.text
    templated = {**SPEC, "job": {"service_required": "sim", "delay_s": 5}}
    assert (await client.post("/api/schedules", json=templated, headers=admin)).status_code == 422


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=False) as api:
        yield api


emp = emp_against


def test_emp_schedules_and_the_api_loop_submit_a_due_tick(
    served: RunningApi, redis_url: str, namespace: str
) -> None:
    added = emp(served, "schedules", "add", "* * * * *", "sim", "--id", "minutely",
                "--payload", json.dumps({"k": "v"}))  # fmt: skip
    assert "schedule minutely: next tick" in added
    assert "minutely" in emp(served, "schedules")

    async def backdate_and_wait() -> list[str]:
        # The schedule as if created three minutes ago: its latest tick is due now, and the
        # running API's loop (every second) must submit it.
        redis = connect(redis_url)
        keys = Keys(namespace)
        record = json.loads(await redis.hget(keys.schedules, "minutely"))
        record["created_at"] -= 180_000
        await redis.hset(keys.schedules, "minutely", json.dumps(record))
        deadline = time.monotonic() + 30
        found: list[str] = []
        while time.monotonic() < deadline and not found:
            found = [k.decode() async for k in redis.scan_iter(keys.job("minutely.*"))]
            await asyncio.sleep(0.2)
        await redis.aclose()
        return found

    [job_key] = asyncio.run(backdate_and_wait())
    tick_ms = int(job_key.rsplit(".", 1)[1])
    assert tick_ms % 60_000 == 0
    assert f"minutely.{tick_ms}" in emp(served, "schedules")
    assert "deleted" in emp(served, "schedules", "rm", "minutely")
    assert "No schedules." in emp(served, "schedules")
