"""Queue control through the API and the CLI: admin only, audited, shown by `emp queues`,
and scheduled and dependent jobs submitted from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.api.conftest import ApiKeys, bearer
from tests.integration.api.threaded_api import RunningApi, emp_against, threaded_api


async def test_pause_drain_resume_through_the_api(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    admin = bearer(api_keys.admin)
    paused = await client.post(
        "/api/queues/sim/pause", json={"reason": "maintenance"}, headers=admin
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"

    job = (await client.post("/api/jobs", json={"service_required": "sim"}, headers=admin)).json()
    explained = (await client.get(f"/api/jobs/{job['id']}/explain", headers=admin)).json()
    assert any("service 'sim' is paused" in r and "maintenance" in r for r in explained["held"])

    assert (await client.post("/api/queues/sim/drain", headers=admin)).json()["state"] == "draining"
    refused = await client.post("/api/jobs", json={"service_required": "sim"}, headers=admin)
    assert refused.status_code == 409
    assert refused.json()["error"] == "queue_draining"

    queues = (await client.get("/api/queues", headers=admin)).json()
    assert [q["state"] for q in queues["queues"] if q["service"] == "sim"] == ["draining"]
    [control] = queues["controls"]
    assert (control["target"], control["name"], control["state"]) == ("service", "sim", "draining")

    assert (await client.post("/api/queues/sim/resume", headers=admin)).json()["state"] == "open"
    assert (await client.get("/api/queues", headers=admin)).json()["controls"] == []
    ok = await client.post("/api/jobs", json={"service_required": "sim"}, headers=admin)
    assert ok.status_code == 201

    audit = (await client.get("/api/audit", headers=admin)).json()["entries"]
    actions = [(e["action"], e["target"]) for e in audit]
    assert ("queue.pause", "sim") in actions
    assert ("queue.drain", "sim") in actions
    assert ("queue.resume", "sim") in actions


async def test_only_admins_control_queues(client: httpx.AsyncClient, api_keys: ApiKeys) -> None:
    for key in (api_keys.acme, api_keys.worker):
        assert (await client.post("/api/queues/sim/pause", headers=bearer(key))).status_code == 403
        assert (await client.post("/api/pools/gpu/pause", headers=bearer(key))).status_code == 403


async def test_a_pool_is_paused_and_resumed(client: httpx.AsyncClient, api_keys: ApiKeys) -> None:
    admin = bearer(api_keys.admin)
    assert (await client.post("/api/pools/gpu/pause", headers=admin)).json()["state"] == "paused"
    [control] = (await client.get("/api/queues", headers=admin)).json()["controls"]
    assert (control["target"], control["name"]) == ("pool", "gpu")
    assert (await client.post("/api/pools/gpu/resume", headers=admin)).json()["state"] == "open"
    assert (await client.post("/api/pools/gpu/drain", headers=admin)).status_code in (404, 405)


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=False) as api:
        yield api


emp = emp_against


def test_emp_queues_pause_drain_resume(served: RunningApi) -> None:
    emp(served, "submit", "sim", "--id", "q-1")
    assert "service sim: paused" in emp(served, "queues", "pause", "sim", "--reason", "upgrade")
    listed = emp(served, "queues")
    assert "paused" in listed
    assert "service sim paused" in listed
    assert "upgrade" in listed
    assert "pool gpu: paused" in emp(served, "queues", "pause-pool", "gpu")
    assert "service sim: draining" in emp(served, "queues", "drain", "sim")
    assert "service sim: open" in emp(served, "queues", "resume", "sim")
    assert "pool gpu: open" in emp(served, "queues", "resume-pool", "gpu")
    assert "paused" not in emp(served, "queues")


def test_emp_submit_delay_run_at_and_after(served: RunningApi) -> None:
    assert "(scheduled)" in emp(served, "submit", "sim", "--id", "later", "--delay", "600")
    assert "(scheduled)" in emp(
        served, "submit", "sim", "--id", "then", "--run-at", "2100-01-01T00:00:00"
    )
    assert "(blocked)" in emp(served, "submit", "sim", "--id", "next", "--after", "later")
    shown = json.loads(emp(served, "explain", "then"))
    assert shown["held"] == [
        "scheduled: not claimable before 2100-01-01 00:00:00 UTC (not_before 4102444800000)"
    ]
