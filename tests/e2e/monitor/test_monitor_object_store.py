"""The monitor shows an output kept in a private S3 bucket (moto's) through a URL the API signs:
its plain URL reads nothing from such a bucket (#14 item 7)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from playwright.async_api import Page, expect
from redis.asyncio import Redis
from tests.e2e.monitor.stack import Stack, log_in
from tests.integration.storage.conftest import REGION, S3Server, moto_server

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.media import solid_png
from emp_queue.models import JobSpec, WorkerCapabilities
from emp_queue.storage import StorageSettings, build_asset_storage

pytestmark = pytest.mark.requires_tool("chromium")

SIDE = 24


@dataclass(frozen=True)
class Served:
    stack: Stack
    storage: StorageSettings


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture
async def served(
    s3: S3Server, redis_client: Redis, redis_url: str, namespace: str
) -> AsyncIterator[Served]:
    storage = StorageSettings(
        provider="s3",
        bucket=s3.create_bucket(),
        s3_endpoint=s3.endpoint,
        s3_region=REGION,
        s3_access_key_id="test-key",
        s3_secret_access_key="test-secret",
        s3_allow_http=True,
    )
    settings = ApiSettings(rate_limit_per_s=None, sweep_interval_s=None, storage=storage)
    core = CoreSettings(namespace=namespace, redis_url=redis_url)
    app = create_app(settings, core, redis_client)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    queue = JobQueue.from_settings(redis_client, core)
    admin = await ApiKeyStore(redis_client, queue.keys).create(Role.ADMIN)
    machines = MachineRegistry(redis_client, queue.keys, queue.events)
    yield Served(Stack(f"http://127.0.0.1:{port}", admin.secret, queue, machines), storage)
    server.should_exit = True
    await task


async def test_an_output_in_a_private_bucket_is_shown_through_a_signed_url(
    page: Page, served: Served, s3: S3Server
) -> None:
    queue = served.stack.queue
    await queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    job = await queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    [claimed] = await queue.claim("w1")
    image = solid_png(SIDE, SIDE, (200, 40, 40))
    stored = await build_asset_storage(served.storage).store(
        job.id, {}, image, content_type="image/png"
    )
    await queue.complete("w1", job.id, claimed.attempt, {"outputs": [stored.as_result()]})

    await log_in(page, served.stack)
    await page.goto(f"{served.stack.monitor}#/jobs/{job.id}")

    shown = page.locator("#job-outputs img.output-image")
    signed = re.compile(rf"^{re.escape(s3.endpoint)}/.*X-Amz-Signature=")
    await expect(shown).to_have_attribute("src", signed)
    await expect(shown).to_have_js_property("complete", True)
    assert await shown.evaluate("img => img.naturalWidth") == SIDE
