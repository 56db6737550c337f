"""Fixtures of the monitor's browser tests: the stack (see stack.py), Chromium, a page."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from redis.asyncio import Redis
from tests.e2e.monitor.stack import (
    CHROMIUM,
    MACHINE_ID,
    SERVICE,
    WORKER_ID,
    Stack,
    machine_record,
    serve,
    simulation_handler,
)

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.models import EventType, WorkerCapabilities
from emp_queue.storage import AssetStorage, LocalDirectoryBackend, StorageSettings
from emp_queue.worker import Worker, WorkerSettings


@pytest.fixture
async def stack(
    redis_client: Redis, redis_url: str, namespace: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    assets = tmp_path / "assets"
    settings = ApiSettings(
        rate_limit_per_s=None,
        sweep_interval_s=None,
        key_cache_s=0,
        storage=StorageSettings(local_dir=assets),
    )
    core = CoreSettings(namespace=namespace, redis_url=redis_url)
    app = create_app(settings, core, redis_client)
    queue = JobQueue.from_settings(redis_client, core)
    machines = MachineRegistry(redis_client, queue.keys, queue.events)
    admin_key = (await ApiKeyStore(redis_client, queue.keys).create(Role.ADMIN)).secret
    async with serve(app) as url:
        storage = AssetStorage(
            {"local": LocalDirectoryBackend(assets, f"{url}/assets")}, "local", "assets"
        )
        worker = Worker(
            queue,
            WORKER_ID,
            WorkerCapabilities(services=[SERVICE]),
            simulation_handler(storage),
            WorkerSettings(concurrency=2, heartbeat_interval_s=0.5, machine_id=MACHINE_ID),
        )
        worker_task = asyncio.create_task(worker.run())
        await worker.registered.wait()
        await machines.publish(machine_record(), EventType.MACHINE_STARTUP_COMPLETE)
        try:
            yield Stack(url, admin_key, queue, machines)
        finally:
            worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    yield page
    await context.close()
