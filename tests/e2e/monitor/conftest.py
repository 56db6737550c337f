"""Fixtures of the monitor's browser tests: the local stack (see stack.py), Chromium, a page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from redis.asyncio import Redis
from tests.e2e.api_process import free_port
from tests.e2e.monitor.stack import CHROMIUM, MACHINE_ID, WORKERS, Stack
from tests.e2e.ports import STACK_START_TRIES, free_stack_offset, lost_a_port_race

from emp_queue.api.settings import ApiSettings
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.machine.startup import MachineStartupError
from emp_queue.stack.local import LocalStack, LocalStackSettings, StackInfo
from emp_queue.storage import StorageSettings


@pytest.fixture
async def stack(
    redis_client: Redis, redis_url: str, namespace: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    api = ApiSettings(
        port=free_port(),
        rate_limit_per_s=None,
        key_cache_s=0,
        storage=StorageSettings(local_dir=tmp_path / "assets"),
    )
    core = CoreSettings(namespace=namespace, redis_url=redis_url, data_dir=tmp_path / "data")
    started = False
    for attempt in range(1, STACK_START_TRIES + 1):
        try:
            async with running_stack(core, api, redis_url) as info:
                started = True
                queue = JobQueue.from_settings(redis_client, core)
                machines = MachineRegistry(redis_client, queue.keys, queue.events)
                yield Stack(info.api_url, info.admin_key, queue, machines)
            return
        except MachineStartupError as error:
            if started or attempt == STACK_START_TRIES or not lost_a_port_race(error):
                raise


@asynccontextmanager
async def running_stack(
    core: CoreSettings, api: ApiSettings, redis_url: str
) -> AsyncIterator[StackInfo]:
    """``emp up`` in this event loop, on service ports no other test is using."""
    up = LocalStackSettings(
        workers=WORKERS, mock_gpus=1, machine_id=MACHINE_ID, port_offset=free_stack_offset()
    )
    ready: asyncio.Future[StackInfo] = asyncio.get_running_loop().create_future()

    async def on_ready(info: StackInfo) -> None:
        ready.set_result(info)

    stop = asyncio.Event()
    running = asyncio.create_task(LocalStack(core, api, up, redis_url).run(stop, on_ready))
    try:
        async with asyncio.timeout(60):
            await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()
        yield ready.result()
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await running


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
