"""The monitor's Customers page (policy form, usage chart) and Pools table, in a real browser
against a real local stack."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect
from tests.e2e.monitor.stack import SERVICE, Stack, log_in

from emp_queue.core.customers import CustomerPolicy
from emp_queue.core.events import STREAM_START
from emp_queue.models import JobSpec, JobStatus, WorkerCapabilities

pytestmark = pytest.mark.requires_tool("chromium")


async def test_an_admin_sets_a_policy_and_sees_usage_per_customer(page: Page, stack: Stack) -> None:
    job = await stack.queue.submit(
        JobSpec(service_required=SERVICE, customer_id="globex", payload={"steps": 1})
    )
    cursor = STREAM_START
    async with asyncio.timeout(60):
        while (await stack.queue.get(job.id)).status is not JobStatus.COMPLETED:
            if events := await stack.queue.events.read(cursor, block_ms=200):
                cursor = events[-1].id

    await log_in(page, stack)
    await page.get_by_role("link", name="Customers").click()
    await expect(page.locator("#customers-table")).to_contain_text("No customer has a policy")
    await page.get_by_label("Customer", exact=True).fill("acme")
    await page.get_by_label("Weight (share relative to others; 1 = default)").fill("3")
    await page.get_by_label("Most jobs running at once").fill("5")
    await page.get_by_label("Most running per service").fill(f"{SERVICE}=2")
    await page.locator("#policy-save").click()
    await expect(page.locator("#policy-result")).to_contain_text("Saved: acme has weight 3")
    row = page.locator("#customers-table tr[data-customer='acme']")
    await expect(row).to_contain_text(f"{SERVICE}=2")
    policy = (await stack.queue.customer("acme")).policy
    assert policy == CustomerPolicy(weight=3, max_running=5, max_running_by_service={SERVICE: 2})

    await page.get_by_label("Most running per service").fill("nonsense")
    await page.locator("#policy-save").click()
    await expect(page.locator("#policy-result")).to_contain_text('"nonsense" is not SERVICE=NUMBER')

    # globex's completed job is in the usage table and its bar in the chart.
    await expect(page.locator("#usage-table")).to_contain_text("globex")
    await expect(page.locator("#usage-chart rect.usage-bar[data-customer='globex']")).to_have_count(
        1
    )
    await page.locator("#usage-measure").select_option("jobs")
    await expect(page.locator("#usage-chart")).to_have_attribute(
        "aria-label", "attempts per hour, by customer"
    )


async def test_the_machines_page_lists_workers_and_waiting_jobs_per_pool(
    page: Page, stack: Stack
) -> None:
    # A worker record of pool fast for a service nothing runs: its job waits, counted as fast.
    caps = WorkerCapabilities(services=["render"], pool="fast")
    await stack.queue.register_worker("render-fast-0", caps)
    await stack.queue.submit(JobSpec(service_required="render", requirements={"pool": "fast"}))
    await log_in(page, stack)
    fast = page.locator("#pools-table tr[data-pool='fast']")
    await expect(fast).to_contain_text("standard after 10.0 s, heavy after 20.0 s")
    await expect(fast).to_contain_text("render 1")
    # The stack's own workers have no pool.
    await expect(page.locator("#pools-table tr[data-pool='']")).to_contain_text("(none)")
