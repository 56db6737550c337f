"""The Python SDK against the real API: async and blocking clients, events, typed errors."""

from __future__ import annotations

from collections.abc import Iterator

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI

from emp_queue.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    WaitTimeoutError,
)
from emp_queue.models import JobSpec, JobStatus
from tests.integration.api.conftest import ApiKeys
from tests.integration.api.threaded_api import RunningApi, threaded_api


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=True) as api:
        yield api


def asgi_client(app: FastAPI, key: str | None) -> AsyncClient:
    return AsyncClient("http://api.test", key, transport=httpx.ASGITransport(app=app))


async def test_submit_get_list_cancel_through_the_sdk(app: FastAPI, api_keys: ApiKeys) -> None:
    async with asgi_client(app, api_keys.acme) as client:
        handle = await client.submit({"service_required": "comfyui", "payload": {"n": 1}})
        assert handle.job.customer_id == "acme", "a client key submits for its customer"
        assert (await client.get(handle.id)).payload == {"n": 1}
        batch = await client.submit_batch([JobSpec(service_required="comfyui")] * 3)
        page = await client.list_jobs(limit=2)
        assert [job.id for job in page.jobs] == [batch[2].id, batch[1].id]
        assert page.next_cursor is not None
        cancelled = await handle.cancel()
        assert cancelled.status is JobStatus.CANCELLED
        with pytest.raises(ConflictError):
            await client.cancel(handle.id)


async def test_errors_are_typed_and_name_the_problem(app: FastAPI, api_keys: ApiKeys) -> None:
    async with asgi_client(app, api_keys.acme) as client:
        with pytest.raises(NotFoundError):
            await client.get("no-such-job")
        with pytest.raises(InvalidRequestError) as invalid:
            await client.submit({"service_required": "comfyui", "requirements": {"gpu": 1}})
        assert "gpu" in invalid.value.message
    async with asgi_client(app, "not-a-key") as stranger:
        with pytest.raises(AuthenticationError):
            await stranger.get("anything")


async def test_wait_and_events_follow_a_job_to_its_end(served: RunningApi) -> None:
    async with AsyncClient(served.url, served.admin_key) as client:
        handle = await client.submit(
            JobSpec(service_required="sim", payload={"steps": 4, "step_s": 0.05, "echo": "hi"})
        )
        events = [event async for event in handle.events()]
        types = [event.type for event in events]
        assert types[0] == "job_submitted"
        assert types[-1] == "complete_job"
        progress = [e.data["progress"] for e in events if e.type == "update_job_progress"]
        # The last report races the result it comes just before: a report not yet sent when
        # the attempt ends is superseded by its outcome (decision 0065).
        assert progress in ([25.0, 50.0, 75.0], [25.0, 50.0, 75.0, 100.0])
        resumed = [event async for event in client.events(handle.id, after=events[2].id)]
        assert [e.id for e in resumed] == [e.id for e in events[3:]], "no gap, no duplicate"
        job = await handle.result(timeout_s=10)
        assert (job.status, job.result) == (JobStatus.COMPLETED, {"echo": "hi"})


async def test_events_skip_the_servers_keep_alive_pings(
    served: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI sends ": ping" every 15 s while a stream is idle; make that every 50 ms.
    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.05)
    async with AsyncClient(served.url, served.admin_key) as client:
        handle = await client.submit(
            JobSpec(service_required="sim", payload={"steps": 2, "step_s": 0.3})
        )
        events = [event async for event in handle.events()]
    assert [event.type for event in events][-1] == "complete_job"
    assert all(event.id and event.type for event in events)


@pytest.mark.slow
async def test_wait_times_out_without_losing_the_job(served: RunningApi) -> None:
    async with AsyncClient(served.url, served.admin_key) as client:
        handle = await client.submit(
            JobSpec(service_required="sim", payload={"steps": 5, "step_s": 0.5})
        )
        with pytest.raises(WaitTimeoutError):
            await handle.result(timeout_s=0.3)
        assert (await handle.result(timeout_s=10)).status is JobStatus.COMPLETED


def test_blocking_client(redis_url: str, namespace: str) -> None:
    with (
        threaded_api(redis_url, namespace, with_worker=True) as api,
        Client(api.url, api.admin_key) as client,
    ):
        job = client.submit(JobSpec(service_required="sim", payload={"echo": 7}))
        seen = [event.type for event in client.events(job.id)]
        assert seen[-1] == "complete_job"
        assert client.wait(job.id, timeout_s=10).result == {"echo": 7}
