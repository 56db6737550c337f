"""Screenshots of the monitor's main views, for the README and docs/monitor.md.

    python -m bench.monitor_screenshots

Seeds a private Valkey with a busy fleet (bench/monitor_stack.py: 12 machines, 60 workers,
2,000 jobs), serves the API on loopback with a real worker running ``simulation`` jobs
(their images stored in a temporary asset directory the API serves), keeps events flowing,
and saves ``docs/screenshots/{machines,jobs,job-detail,logs,submit,charts,audit}.png`` at desktop
width and ``…-phone.png`` at a phone's (390 px).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, async_playwright

from bench.monitor_bench import CHROMIUM, new_page, serve
from bench.monitor_stack import EventDriver, seed
from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.connectors.simulation import SimulationConnector
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.models import JobSpec, WorkerCapabilities
from emp_queue.storage import AssetStorage, LocalDirectoryBackend, StorageSettings
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.settings import WebhookSettings
from emp_queue.worker import JobContext, JobHandler, Worker, WorkerSettings
from emp_queue.worker.running_job import ConnectorJob


def simulation_handler(storage: AssetStorage) -> JobHandler:
    """Jobs run through the simulation connector, as ``emp worker`` runs them."""
    connector = SimulationConnector()

    async def handler(context: JobContext) -> dict[str, object]:
        return await connector.run(ConnectorJob(context, storage, progress_interval_s=0.1))

    return handler


OUT = Path(__file__).parent.parent / "docs" / "screenshots"
NAMESPACE = "monitor-shots"


async def shoot(page: Page, name: str, ready: str) -> None:
    await page.locator(ready).first.wait_for()
    await page.wait_for_timeout(600)  # let the live bars and throttled cards settle
    await page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"saved docs/screenshots/{name}.png")


async def operator_actions(url: str, key: str, queue: JobQueue) -> None:
    """A few actions for the audit log to show: cancels, a retry, a service restart."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        page = (await http.get("/api/jobs", params={"status": "pending", "limit": 3})).json()
        for job in page["jobs"]:
            await http.post(f"/api/jobs/{job['id']}/cancel", json={"reason": "duplicate"})
        await http.post(f"/api/jobs/{page['jobs'][0]['id']}/retry")
        await http.post("/api/machines/machine-003/services/comfyui-0/restart")
        await http.post(f"/api/jobs/{page['jobs'][1]['id']}/retry")
        await http.post(f"/api/jobs/{page['jobs'][1]['id']}/retry")  # pending again: refused


async def tenants_and_webhooks(url: str, key: str, receiver_url: str) -> None:
    """Two customers with policies and usage, and a webhook subscription with deliveries, for
    the Customers and Webhooks views."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        await http.put("/api/customers/acme", json={"weight": 3, "max_running": 8})
        await http.put("/api/customers/globex", json={"weight": 1, "max_pending": 500})
        created = await http.post(
            "/api/webhooks",
            json={"url": receiver_url + "/events", "events": ["job.completed", "job.failed"],
                  "description": "orders service"},
        )  # fmt: skip
        created.raise_for_status()
        for n in range(6):
            job = {
                "service_required": "simulation",
                "customer_id": ("acme", "globex")[n % 2],
                "payload": {"steps": 2, "step_delay_s": 0.02},
            }
            (await http.post("/api/jobs", json=job)).raise_for_status()


PHONE = {"width": 390, "height": 844}
PHONE_VIEWS = (
    ("machines", "machines", ".machine-row"),
    ("jobs", "jobs", ".active-row"),
    ("job-detail", "jobs/{job}", "#job-timeline li"),
    ("logs", "logs", ".log-row"),
    ("submit", "submit", "#submit-button"),
    ("charts", "charts", "svg.chart"),
    ("audit", "audit", "#audit-rows tr"),
    ("customers", "customers", "#customers-table tr[data-customer]"),
    ("webhooks", "webhooks", "#subscription-rows tr[data-subscription]"),
)


async def shoot_phone(browser: Browser, key: str, url: str, job_id: str) -> None:
    """Each view at a phone's width (390 px), full page: ``<view>-phone.png``."""
    context = await browser.new_context(viewport=PHONE, device_scale_factor=1)
    await context.add_init_script(f"sessionStorage.setItem('emp-monitor-key', {key!r})")
    page = await context.new_page()
    try:
        for name, route, ready in PHONE_VIEWS:
            await page.goto(f"{url}/monitor#/{route.format(job=job_id)}")
            await page.locator(ready).first.wait_for()
            await page.wait_for_timeout(600)
            await page.screenshot(path=str(OUT / f"{name}-phone.png"), full_page=True)
            print(f"saved docs/screenshots/{name}-phone.png")
    finally:
        await context.close()


async def run(redis_url: str, assets: Path) -> None:
    redis = connect(redis_url)
    core = CoreSettings(
        namespace=NAMESPACE, redis_url=redis_url, lease_s=3600, worker_timeout_s=3600
    )
    queue = JobQueue.from_settings(redis, core)
    machines = MachineRegistry(redis, queue.keys, queue.events, timeout_s=3600)
    key = (await ApiKeyStore(redis, queue.keys).create(Role.ADMIN)).secret
    running = await seed(
        queue, machines, jobs=2000, workers=60, machine_count=12, completed=600, failed=40
    )
    settings = ApiSettings(
        rate_limit_per_s=None,
        sweep_interval_s=None,
        machine_timeout_s=3600,
        storage=StorageSettings(local_dir=assets),
        webhooks=WebhookSettings(allow_hosts=["127.0.0.1/32"], idle_poll_s=0.05),
    )
    app = create_app(settings, core, redis)
    receiver = WebhookReceiver()
    async with serve(app) as url, receiver.running(), async_playwright() as playwright:
        storage = AssetStorage(
            {"local": LocalDirectoryBackend(assets, f"{url}/assets")}, "local", "assets"
        )
        worker = Worker(
            queue,
            "machine-000-sim",
            WorkerCapabilities(services=["simulation"]),
            simulation_handler(storage),
            WorkerSettings(concurrency=2, machine_id="machine-000"),
        )
        worker_task = asyncio.create_task(worker.run())
        driver = EventDriver(queue, running, 40)
        driver_task = asyncio.create_task(driver.run())
        image_job = await queue.submit(
            JobSpec(
                service_required="simulation",
                priority=100,
                payload={
                    "steps": 5,
                    "step_delay_s": 0.05,
                    "image": {"width": 256, "height": 256},
                    "seed": "lighthouse at dusk",
                },
            )
        )
        await operator_actions(url, key, queue)
        await tenants_and_webhooks(url, key, receiver.url)
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        page = await new_page(browser, key)
        try:
            await page.goto(f"{url}/monitor#/machines")
            await page.locator(".machine-row[data-machine='machine-001']").click()
            await page.evaluate("window.scrollTo(0, 0)")
            await shoot(page, "machines", "article.machine")
            await page.goto(f"{url}/monitor#/jobs")
            await shoot(page, "jobs", ".active-row")
            await page.goto(f"{url}/monitor#/jobs/{image_job.id}")
            await page.locator("#job-outputs img[src^='blob:']").wait_for()
            await shoot(page, "job-detail", "#job-timeline li")
            await page.goto(f"{url}/monitor#/logs")
            await page.locator(".log-row", has_text="job_failed").last.click()
            await shoot(page, "logs", "#log-detail dl")
            await page.goto(f"{url}/monitor#/submit")
            await page.locator("#add-requirement").click()
            await page.locator(".req-key").fill("region")
            await page.locator(".req-value").fill("eu")
            await page.locator("#submit-models").fill("sdxl.safetensors")
            await page.locator("#submit-payload").fill(
                json.dumps(
                    {"steps": 20, "step_delay_s": 0.1, "image": {"width": 64, "height": 64}},
                    indent=2,
                )
            )
            await shoot(page, "submit", "#submit-button")
            await page.goto(f"{url}/monitor#/charts")
            await shoot(page, "charts", "svg.chart")
            await page.goto(f"{url}/monitor#/audit")
            await shoot(page, "audit", "#audit-rows tr")
            await page.goto(f"{url}/monitor#/customers")
            await page.locator("#usage-chart rect.usage-bar").first.wait_for()
            await shoot(page, "customers", "#customers-table tr[data-customer]")
            await page.goto(f"{url}/monitor#/webhooks")
            await page.locator("#subscription-rows tr[data-subscription]").first.click()
            await page.locator("#subscription-log tr[data-delivery]").first.wait_for()
            await shoot(page, "webhooks", "#subscription-log tr[data-delivery]")
            await shoot_phone(browser, key, url, image_job.id)
        finally:
            await browser.close()
            driver.stopped.set()
            await driver_task
            worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
    await redis.aclose()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedValkey(Path(data_dir) / "valkey", persistent=False) as server,
    ):
        asyncio.run(run(server.url, Path(data_dir) / "assets"))


if __name__ == "__main__":
    main()
