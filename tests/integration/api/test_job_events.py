"""SSE through a real uvicorn: a job's events live, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from tests.integration.api.conftest import ApiKeys, bearer

SIM = WorkerCapabilities(services=["sim"])


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each event as {"id", "event", "data"}; comments (keep-alives) skipped."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                yield {**fields, "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def read_events(
    http: httpx.AsyncClient, job_id: str, *, last_event_id: str | None = None, stop_after: int = 0
) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, Any]] = []
    async with http.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in sse_events(response):
            events.append(event)
            if len(events) == stop_after:
                break
    return events


async def test_a_jobs_events_arrive_live_and_the_stream_ends_with_it(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    other = await job_queue.submit(JobSpec(service_required="sim", priority=10))

    async def run_job() -> None:
        await asyncio.sleep(0.2)
        [claimed] = await job_queue.claim("w1")
        assert claimed.job.id == job.id
        await job_queue.cancel(other.id)
        for progress in (0.0, 50.0):
            await job_queue.report_progress("w1", job.id, claimed.attempt, progress)
        await job_queue.complete("w1", job.id, claimed.attempt, {"ok": True})

    async with httpx.AsyncClient(base_url=live_url, headers=bearer(api_keys.admin)) as http:
        async with asyncio.timeout(15):
            worker = asyncio.create_task(run_job())
            events = await read_events(http, job.id)
            await worker

    assert [e["event"] for e in events] == [
        "job_submitted",
        "job_assigned",
        "job_status_changed",
        "update_job_progress",
        "update_job_progress",
        "complete_job",
    ]
    assert {e["data"]["job_id"] for e in events} == {job.id}
    assert [e["id"] for e in events] == [e["data"]["id"] for e in events]
    assert events[3]["data"]["data"]["progress"] == 0.0
    assert events[-1]["data"]["type"] == "complete_job"


async def test_reconnecting_with_last_event_id_resumes_without_gap_or_duplicate(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    [claimed] = await job_queue.claim("w1")
    for progress in (10.0, 20.0, 30.0):
        await job_queue.report_progress("w1", job.id, claimed.attempt, progress)

    async with httpx.AsyncClient(base_url=live_url, headers=bearer(api_keys.admin)) as http:
        async with asyncio.timeout(15):
            first = await read_events(http, job.id, stop_after=3)
            # While the client is away the job moves on.
            await job_queue.report_progress("w1", job.id, claimed.attempt, 90.0)
            await job_queue.complete("w1", job.id, claimed.attempt, None)
            resumed = await read_events(http, job.id, last_event_id=first[-1]["id"])
            whole = await read_events(http, job.id)

    assert [e["id"] for e in first + resumed] == [e["id"] for e in whole]
    assert [e["event"] for e in whole][-2:] == ["update_job_progress", "complete_job"]
    assert len(whole) == 8  # submitted, assigned, in_progress, 4 progress reports, complete


async def test_a_stream_for_a_finished_job_replays_and_ends(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    job = await job_queue.submit(JobSpec(service_required="sim"))
    await job_queue.cancel(job.id, "not needed")

    response = await admin.get(f"/api/jobs/{job.id}/events")
    lines = [line for line in response.text.splitlines() if line.startswith("event:")]

    assert lines == ["event: job_submitted", "event: job_cancelled"]


async def test_a_malformed_last_event_id_is_422(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    job = await job_queue.submit(JobSpec(service_required="sim"))

    response = await admin.get(f"/api/jobs/{job.id}/events", headers={"Last-Event-ID": "x"})

    assert response.status_code == 422
    assert "last-event-id" in response.json()["message"].lower()
