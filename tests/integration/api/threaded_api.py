"""The API (and optionally a simulated worker) served from a thread with its own event loop,
for the blocking SDK client and the CLI, which run their own loops."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.models import WorkerCapabilities
from emp_queue.storage import StorageSettings
from emp_queue.worker import JobContext, Worker, WorkerSettings
from tests.integration.api.conftest import TEST_SERVICES


@dataclass(frozen=True)
class RunningApi:
    url: str
    admin_key: str


async def simulate(context: JobContext) -> dict[str, Any]:
    steps = int(context.job.payload.get("steps", 3))
    for step in range(steps):
        await asyncio.sleep(float(context.job.payload.get("step_s", 0.05)))
        await context.report_progress(100 * (step + 1) / steps)
    return {"echo": context.job.payload.get("echo")}


async def _admin_key(redis_url: str, namespace: str) -> str:
    redis = connect(redis_url)
    try:
        return (await ApiKeyStore(redis, Keys(namespace)).create(Role.ADMIN)).secret
    finally:
        await redis.aclose()


@contextmanager
def threaded_api(
    redis_url: str, namespace: str, *, with_worker: bool, storage: StorageSettings | None = None
) -> Iterator[RunningApi]:
    admin_key = asyncio.run(_admin_key(redis_url, namespace))
    scratch = tempfile.mkdtemp(prefix="emp-threaded-api-")
    started = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        redis = connect(redis_url)
        settings = ApiSettings(
            port=0,
            rate_limit_per_s=None,
            sweep_interval_s=None,
            services=TEST_SERVICES,
            # Never the user's data directory: what a test uploads stays in its scratch folder.
            storage=storage or StorageSettings(local_dir=Path(scratch) / "assets"),
        )
        app = create_app(settings, CoreSettings(namespace=namespace, redis_url=redis_url), redis)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
        worker = Worker(
            JobQueue(redis, namespace=namespace),
            "sim-worker",
            WorkerCapabilities(services=["sim"]),
            simulate,
            WorkerSettings(concurrency=4, heartbeat_interval_s=0.5, drain_grace_s=1),
        )
        tasks = [asyncio.create_task(server.serve())]
        if with_worker:
            tasks.append(asyncio.create_task(worker.run()))
            await worker.registered.wait()
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await asyncio.sleep(0.01)
        box["url"] = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        started.set()
        await asyncio.to_thread(stop.wait)
        worker.stop()
        server.should_exit = True
        await asyncio.gather(*tasks)
        await redis.aclose()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    if not started.wait(15):
        raise RuntimeError("the threaded API did not start")
    try:
        yield RunningApi(box["url"], admin_key)
    finally:
        stop.set()
        thread.join(15)
        shutil.rmtree(scratch, ignore_errors=True)


def emp_against(api: RunningApi, *args: str) -> str:
    """Run an `emp` command against ``api`` with its admin key; its output (exit 0 asserted)."""
    from typer.testing import CliRunner

    from emp_queue.cli.main import app

    env = {"EMP_API_URL": api.url, "EMP_API_KEY": api.admin_key, "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output
