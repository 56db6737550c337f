"""The monitor shows an output kept in a private S3 bucket (moto's) through a URL the API signs:
its plain URL reads nothing from such a bucket (#14 item 7)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis
from tests.e2e.monitor.api_only import api_only
from tests.e2e.monitor.stack import Stack, log_in
from tests.integration.storage.conftest import REGION, S3Server, moto_server

from emp_queue.api.settings import ApiSettings
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
    async with api_only(settings, core, redis_client) as stack:
        yield Served(stack, storage)


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
