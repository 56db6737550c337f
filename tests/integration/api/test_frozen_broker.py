"""A frozen Redis (SIGSTOP: connected, never answering) against the API and the SDK.

The server is the test's own process, never the shared one: freezing that would stall every
other test on the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.client import AsyncClient
from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.testing.replication import FreezableValkey

ANSWER_TIMEOUT_S = 1.0
SLACK_S = 1.0  # the loaded test machine's scheduling, on top of the bound
NAMESPACE = "frozen"


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[FreezableValkey]:
    with FreezableValkey(tmp_path / "valkey") as server:
        yield server


@pytest.fixture
async def frozen_app(valkey: FreezableValkey) -> AsyncIterator[tuple[FastAPI, str]]:
    redis = connect(valkey.url)
    settings = ApiSettings(
        answer_timeout_s=ANSWER_TIMEOUT_S,
        sweep_interval_s=None,
        key_cache_s=600,  # the key is checked once, before the freeze
        rate_limit_per_s=None,  # no rate window to renew from Redis mid-test
        services=["sim"],
    )
    app = create_app(settings, CoreSettings(namespace=NAMESPACE, redis_url=valkey.url), redis)
    key = await ApiKeyStore(redis, Keys(NAMESPACE)).create(Role.CLIENT, customer_id="acme")
    yield app, key.secret
    await redis.aclose()


def http_client(app: FastAPI, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {secret}"},
    )


async def test_requests_get_503_within_the_bound_and_a_retry_id(
    frozen_app: tuple[FastAPI, str], valkey: FreezableValkey
) -> None:
    app, secret = frozen_app
    async with http_client(app, secret) as http:
        assert (await http.get("/api/jobs")).status_code == 200  # the key is now cached
        with valkey.frozen():
            started = time.monotonic()
            listing = await http.get("/api/jobs")
            listing_s = time.monotonic() - started
            started = time.monotonic()
            submitted = await http.post("/api/jobs", json={"service_required": "sim"})
            submit_s = time.monotonic() - started
        assert listing.status_code == 503, listing.text
        assert listing.json()["error"] == "broker_unavailable"
        assert listing_s < ANSWER_TIMEOUT_S + SLACK_S
        assert submitted.status_code == 503, submitted.text
        assert submit_s < ANSWER_TIMEOUT_S + SLACK_S
        assert submitted.headers["retry-after"] == "1"
        (job_id,) = submitted.json()["job_ids"]
        assert job_id in submitted.json()["message"]

        # The command reached Redis before the freeze ended: following the 503's advice
        # returns that job, never a second one.
        again = await http.post("/api/jobs", json={"service_required": "sim", "id": job_id})
        assert again.status_code == 201, again.text
        assert again.json()["id"] == job_id
        listed = (await http.get("/api/jobs")).json()["jobs"]
        assert [job["id"] for job in listed] == [job_id]


async def test_sdk_submit_retries_an_ambiguous_outcome_with_the_same_id(
    frozen_app: tuple[FastAPI, str], valkey: FreezableValkey
) -> None:
    app, secret = frozen_app
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient("http://api.test", secret, transport=transport) as client:
        await client.list_jobs()  # the key is now cached
        valkey.freeze()
        try:
            submission = asyncio.create_task(client.submit({"service_required": "sim"}))
            # The first attempt answers 503 after ANSWER_TIMEOUT_S; the SDK tries again.
            await asyncio.sleep(ANSWER_TIMEOUT_S + 0.5)
            assert not submission.done()
        finally:
            valkey.thaw()
        async with asyncio.timeout(30):
            handle = await submission
        page = await client.list_jobs()
        assert [job.id for job in page.jobs] == [handle.id]
