"""The API alone (no machine, no worker process) on a loopback port, for monitor tests that set
up the queue's state themselves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from redis.asyncio import Redis
from tests.e2e.monitor.stack import Stack

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings


@contextlib.asynccontextmanager
async def api_only(settings: ApiSettings, core: CoreSettings, redis: Redis) -> AsyncIterator[Stack]:
    app = create_app(settings, core, redis)
    # The page may still hold an event stream when this ends: close it instead of waiting.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        queue = JobQueue.from_settings(redis, core)
        admin = await ApiKeyStore(redis, queue.keys).create(Role.ADMIN)
        machines = MachineRegistry(redis, queue.keys, queue.events)
        yield Stack(f"http://127.0.0.1:{port}", admin.secret, queue, machines)
    finally:
        server.should_exit = True
        await task
