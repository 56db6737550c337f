"""What the monitor page needs from the API: per-minute history, a cheaper snapshot, the page."""

from __future__ import annotations

import httpx
from websockets.asyncio.client import connect

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from tests.integration.api.conftest import ApiKeys, bearer
from tests.integration.api.test_websockets import monitor_url, receive, send

SIM = WorkerCapabilities(services=["sim"])


async def test_history_counts_this_minute(admin: httpx.AsyncClient, job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", SIM)
    jobs = await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(4)])
    await job_queue.cancel(jobs[3].id)
    (claimed,) = await job_queue.claim("w1", 1)
    await job_queue.complete("w1", claimed.job.id, claimed.attempt, {"ok": True})

    response = await admin.get("/api/stats/history", params={"minutes": 5})

    assert response.status_code == 200
    body = response.json()
    assert len(body["minutes"]) == 5
    assert body["complete"] is True
    # The test may straddle a minute boundary: the counts are summed over the window.
    minutes = body["minutes"]
    totals = tuple(
        sum(m[field] for m in minutes) for field in ("submitted", "completed", "cancelled")
    )
    assert totals == (4, 1, 1)
    assert minutes[-1]["pending"] == 2
    # Before anything was submitted nothing waited: the depth is undone minute by minute.
    assert body["minutes"][0]["pending"] == 0


async def test_history_needs_an_operator_key(client: httpx.AsyncClient, api_keys: ApiKeys) -> None:
    assert (await client.get("/api/stats/history")).status_code == 401
    forbidden = await client.get("/api/stats/history", headers=bearer(api_keys.acme))
    assert forbidden.status_code == 403


async def test_snapshot_lists_only_the_statuses_asked(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(3)])
    (claimed,) = await job_queue.claim("w1", 1)
    async with connect(monitor_url(live_url, api_keys.admin)) as ws:
        await send(ws, "request_full_state", statuses=["assigned"])
        snapshot = await receive(ws)

    data = snapshot["data"]
    assert [job["id"] for job in data["jobs"]["assigned"]] == [claimed.job.id]
    assert data["jobs"]["pending"] == []
    assert data["queues"][0]["counts"]["pending"] == 2


async def test_monitor_page_is_served_without_a_key(client: httpx.AsyncClient) -> None:
    page = await client.get("/monitor")
    module = await client.get("/monitor/static/js/main.js")
    missing = await client.get("/monitor/static/js/nothing.js")

    assert page.status_code == 200
    assert '<script type="module" src="/monitor/static/js/main.js">' in page.text
    assert module.status_code == 200
    assert "javascript" in module.headers["content-type"]
    assert module.headers["cache-control"] == "no-cache"
    assert missing.status_code == 404
    assert "redis://" not in page.text
