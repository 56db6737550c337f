"""A worker in the test's own event loop: a connector (or a plain handler) claiming from a queue.

``async with run_worker(queue, connector, storage=storage) as worker`` starts the connector,
discovers what its service offers, registers a worker with those capabilities and claims jobs
until the block ends; then the worker drains and the connector closes. With a handler (an
``async def handler(context) -> result``), name the ``service`` it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from emp_queue.connectors.base import Connector
from emp_queue.core.queue import JobQueue
from emp_queue.errors import ConfigurationError
from emp_queue.hardware import GpuMode, HardwareSettings, detect_hardware
from emp_queue.models import WorkerCapabilities
from emp_queue.storage import AssetStorage
from emp_queue.worker.capabilities import worker_capabilities
from emp_queue.worker.context import JobHandler
from emp_queue.worker.process import WorkerProcess
from emp_queue.worker.runtime import Worker
from emp_queue.worker.settings import WorkerProcessSettings, WorkerSettings

STOP_TIMEOUT_S = 10.0


@contextlib.asynccontextmanager
async def run_worker(
    queue: JobQueue,
    target: Connector | JobHandler,
    *,
    storage: AssetStorage | None = None,
    service: str | None = None,
    concurrency: int = 1,
    worker_id: str | None = None,
) -> AsyncIterator[Worker]:
    """Run ``target`` as a registered worker of ``queue`` for the duration of the block."""
    worker_id = worker_id or f"test-worker-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings(concurrency=concurrency, drain_grace_s=STOP_TIMEOUT_S)
    if isinstance(target, Connector):
        if storage is None:
            raise ConfigurationError(
                f"running the {target.kind} connector needs an AssetStorage for its outputs; "
                "pass storage= (the pytest fixture `asset_storage` is one)"
            )
        await target.start()
        try:
            worker = await _connector_worker(queue, target, storage, service, worker_id, settings)
            async with _running(worker):
                yield worker
        finally:
            await target.close()
    else:
        if service is None:
            raise ConfigurationError("a handler serves no service by itself; pass service=")
        capabilities = WorkerCapabilities(services=[service])
        worker = Worker(queue, worker_id, capabilities, target, settings)
        async with _running(worker):
            yield worker


async def _connector_worker(
    queue: JobQueue,
    connector: Connector,
    storage: AssetStorage,
    service: str | None,
    worker_id: str,
    settings: WorkerSettings,
) -> Worker:
    process_settings = WorkerProcessSettings(
        connector=connector.kind,
        services=[service] if service else [],
        worker_id=worker_id,
        concurrency=settings.concurrency,
    )
    machine = detect_hardware(HardwareSettings(gpu_mode=GpuMode.MOCK))
    process = WorkerProcess(process_settings, queue, connector, storage, machine)
    capabilities = worker_capabilities(process_settings, machine, await connector.discover())
    return Worker(queue, worker_id, capabilities, process.handle, settings)


@contextlib.asynccontextmanager
async def _running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run(), name=f"worker-{worker.worker_id}")
    registered = asyncio.create_task(worker.registered.wait())
    await asyncio.wait({task, registered}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        registered.cancel()
        task.result()  # raises what stopped the worker before it registered
    try:
        yield
    finally:
        worker.stop()
        async with asyncio.timeout(STOP_TIMEOUT_S * 2):
            await task
