"""The local stack the monitor's browser tests drive, and their shared steps.

The API runs on a loopback port (uvicorn, in this test's event loop), a real ``Worker``
runs jobs through the ``simulation`` connector and stores their images in a local asset
directory the API serves, a machine record is published through ``MachineRegistry`` (as
the machine agent does), and Debian's Chromium is driven headless by Playwright.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from playwright.async_api import Page

from emp_queue.connectors.simulation import SimulationConnector
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import (
    GpuInfo,
    MachineHardware,
    MachinePhase,
    MachineRecord,
    ServiceState,
    ServiceStatus,
    StartupStep,
    StepStatus,
)
from emp_queue.storage import AssetStorage, StoredAsset
from emp_queue.worker import JobContext, JobHandler

CHROMIUM = "/usr/bin/chromium"
MACHINE_ID = "gpu-box-1"
WORKER_ID = "gpu-box-1-simulation-0"
SERVICE = "simulation"


@dataclass
class ConnectorRun:
    """The connector's view of a job (``RunningJob``) over the worker's ``JobContext``."""

    context: JobContext
    storage: AssetStorage
    stored: list[StoredAsset] = field(default_factory=list)

    @property
    def job(self) -> Any:
        return self.context.job

    @property
    def attempt(self) -> int:
        return self.context.attempt

    @property
    def payload(self) -> dict[str, Any]:
        return self.context.job.payload

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        await self.context.report_progress(None if fraction is None else fraction * 100, message)

    async def store(
        self, data: bytes, *, content_type: str, filename: str | None = None
    ) -> StoredAsset:
        job = self.context.job
        asset = await self.storage.store(
            job.id,
            job.ctx,
            data,
            content_type=content_type,
            filename=filename,
            index=len(self.stored),
        )
        self.stored.append(asset)
        return asset


def simulation_handler(storage: AssetStorage) -> JobHandler:
    """A worker handler that runs each job through the ``simulation`` connector."""
    connector = SimulationConnector()

    async def handler(context: JobContext) -> dict[str, Any]:
        return await connector.run(ConnectorRun(context, storage))

    return handler


@dataclass(frozen=True)
class Stack:
    url: str
    admin_key: str
    queue: JobQueue
    machines: MachineRegistry

    @property
    def monitor(self) -> str:
        return f"{self.url}/monitor"


def machine_record() -> MachineRecord:
    return MachineRecord(
        machine_id=MACHINE_ID,
        phase=MachinePhase.READY,
        hardware=MachineHardware(
            gpus=[GpuInfo(index=0, name="NVIDIA RTX 4090", memory_gb=24)],
            cpu_cores=16,
            ram_gb=64,
            gpu_mode="mock",
        ),
        steps=[
            StartupStep(name="detect_hardware", status=StepStatus.DONE, duration_ms=120),
            StartupStep(name="start_comfyui-0", status=StepStatus.DONE, duration_ms=8400),
            StartupStep(name="start_workers", status=StepStatus.DONE, duration_ms=900),
        ],
        services=[
            ServiceState(
                name="comfyui-0",
                kind="daemon",
                status=ServiceStatus.RUNNING,
                pid=4242,
                port=8188,
                gpu=0,
            ),
            ServiceState(name="worker-simulation-0", kind="worker", status=ServiceStatus.RUNNING),
        ],
        workers=[WORKER_ID],
        worker_types={"simulation": 1},
        started_at=1,
        startup_ms=9420,
    )


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """``app`` on a free loopback port, for the duration of the block; yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def log_in(page: Page, stack: Stack) -> None:
    await page.goto(stack.monitor)
    await page.get_by_label("Admin key").fill(stack.admin_key)
    await page.get_by_role("button", name="Log in").click()
