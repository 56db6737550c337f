"""A job waiting because its only worker's service is down says so on its page (#14 item 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis
from tests.e2e.monitor.api_only import api_only
from tests.e2e.monitor.stack import Stack, log_in

from emp_queue.api.settings import ApiSettings
from emp_queue.core.settings import CoreSettings
from emp_queue.models import JobSpec, WorkerCapabilities

pytestmark = pytest.mark.requires_tool("chromium")


@pytest.fixture
async def stack(redis_client: Redis, redis_url: str, namespace: str) -> AsyncIterator[Stack]:
    settings = ApiSettings(rate_limit_per_s=None, sweep_interval_s=None)
    core = CoreSettings(namespace=namespace, redis_url=redis_url)
    async with api_only(settings, core, redis_client) as stack:
        yield stack


async def test_a_job_waiting_for_a_down_service_says_so(page: Page, stack: Stack) -> None:
    await stack.queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    await stack.queue.heartbeat("w1", status="service_down")
    job = await stack.queue.submit(JobSpec(service_required="sim"))

    await log_in(page, stack)
    await page.goto(f"{stack.monitor}#/jobs/{job.id}")

    why = page.locator(".explain-box")
    await expect(why).to_contain_text("1 of them cannot reach their service (service_down)")
    await expect(why).to_contain_text("without spending attempts")
