"""The monitor's webhooks: the subscriptions, a subscription's delivery log with attempts and
redelivery, and a job's deliveries on its page — in a real browser, against the API served on
loopback with its webhook dispatcher sending to a real receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.settings import WebhookSettings

pytestmark = pytest.mark.requires_tool("chromium")


@dataclass(frozen=True)
class Api:
    url: str
    admin_key: str


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    fake = WebhookReceiver(status_code=503)  # down until the test says otherwise
    async with fake.running():
        yield fake


@pytest.fixture
async def api(redis_client: Redis, namespace: str, redis_url: str) -> AsyncIterator[Api]:
    settings = ApiSettings(
        rate_limit_per_s=None,
        key_cache_s=0,
        sweep_interval_s=None,
        services=["sim"],
        # Retries every 0.3-0.5 s while the receiver answers 503: the endpoint's breaker
        # (5 failures by default) opened before the receiver recovered when the browser was
        # slow to show the log, and then held the delivery back past the test's wait.
        webhooks=WebhookSettings(
            allow_hosts=["127.0.0.1/32"], idle_poll_s=0.05, retry_base_s=0.3,
            retry_max_delay_s=0.5, breaker_failures=1_000,
        ),
    )  # fmt: skip
    app = create_app(settings, CoreSettings(namespace=namespace, redis_url=redis_url), redis_client)
    admin = await ApiKeyStore(redis_client, Keys(namespace)).create(Role.ADMIN, label="monitor")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Api(f"http://127.0.0.1:{port}", admin.secret)
    server.should_exit = True
    await serving


async def log_in(page: Page, api: Api) -> None:
    await page.goto(f"{api.url}/monitor")
    await page.get_by_label("Admin key").fill(api.admin_key)
    await page.get_by_role("button", name="Log in").click()


def times_sent(receiver: WebhookReceiver, webhook_id: str) -> int:
    return sum(1 for item in receiver.received if item.webhook_id == webhook_id)


async def test_the_webhooks_view_shows_the_delivery_log_and_redelivers(
    page: Page, api: Api, receiver: WebhookReceiver, job_queue: JobQueue
) -> None:
    headers = {"Authorization": f"Bearer {api.admin_key}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers) as http:
        created = await http.post(
            "/api/webhooks",
            json={"url": receiver.url + "/events", "events": ["job.completed"],
                  "description": "orders"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
    subscription_id = created.json()["id"]
    await job_queue.register_worker("w", WorkerCapabilities(services=["sim"]))
    job = await job_queue.submit(JobSpec(service_required="sim", webhook=receiver.url + "/job"))
    [claimed] = await job_queue.claim("w")
    await job_queue.complete("w", job.id, claimed.attempt, {"ok": True})

    await log_in(page, api)
    await page.get_by_role("link", name="Webhooks").click()
    row = page.locator(f"#subscription-rows tr[data-subscription='{subscription_id}']")
    await expect(row).to_contain_text(receiver.url + "/events")
    await expect(row).to_contain_text("job.completed")
    log = page.locator("#subscription-log tr[data-delivery]")
    # The receiver answers 503: the delivery waits for a retry, with the answer shown.
    await expect(log).to_have_count(1, timeout=30_000)
    await expect(log).to_contain_text("HTTP 503", timeout=30_000)
    await expect(log).to_have_attribute("data-status", "pending")
    await expect(log).to_contain_text("retry")

    receiver.status_code = 204  # the receiver recovers; the next retry delivers
    await expect(log).to_have_attribute("data-status", "delivered", timeout=30_000)
    await expect(log).to_contain_text("HTTP 204")
    webhook_id = await log.get_attribute("data-delivery")
    assert webhook_id is not None
    await log.get_by_title("Show every attempt").click()
    attempts = page.locator("#subscription-log td.attempt-log li")
    await expect(attempts.first).to_contain_text("HTTP 503")
    await expect(attempts.last).to_contain_text("HTTP 204")

    sent_before = times_sent(receiver, webhook_id)
    await log.get_by_role("button", name="Redeliver").click()
    await expect(page.locator("#subscription-log [role=status]")).to_contain_text("again")
    async with asyncio.timeout(30):
        while times_sent(receiver, webhook_id) == sent_before:  # noqa: ASYNC110 - it only records
            await asyncio.sleep(0.05)

    # The job's page lists both of its deliveries: its own webhook and the subscription's.
    await page.goto(f"{api.url}/monitor#/jobs/{job.id}")
    job_log = page.locator("#job-webhooks tr[data-delivery]")
    await expect(job_log).to_have_count(2, timeout=30_000)
    await expect(job_log.filter(has_text="/job")).to_contain_text("job.completed")
    await expect(job_log.filter(has_text="/events")).to_contain_text("HTTP 204")
