"""A job whose model is installed nowhere but in the component manifest: a worker with the
disk for it reports it fetchable, claims the job, downloads the model with progress, runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.events import STREAM_START
from emp_queue.machine.components import ComponentSettings, Manifest
from emp_queue.worker import JobContext, Worker, WorkerSettings
from emp_queue.worker.model_fetch import ModelFetcher

from .conftest import ModelServer, model_entry

COMFY = {"services": ["comfyui"], "models": {"comfyui": {"installed": ["sdxl.safetensors"]}}}


async def test_a_worker_fetches_the_model_a_job_needs_then_runs_it(
    job_queue: JobQueue, model_server: ModelServer, settings: ComponentSettings
) -> None:
    data = b"flux weights " * 40_000
    manifest = Manifest.model_validate({"models": [model_entry(model_server, "flux", data)]})
    fetcher = ModelFetcher(settings, manifest)
    caps = fetcher.with_fetchable(WorkerCapabilities.model_validate(COMFY))
    held = caps.models["comfyui"]
    assert (held.fetchable, held.sizes) == (["flux.safetensors"], {"flux.safetensors": len(data)})

    # Without room for it a worker does not offer it: the job would be unworkable there.
    no_room = settings.model_copy(update={"disk_reserve_gb": 1e9})
    bare = ModelFetcher(no_room, manifest).with_fetchable(WorkerCapabilities.model_validate(COMFY))
    assert bare.models["comfyui"].fetchable == []

    placed = Path(settings.models_dir) / "checkpoints" / "flux.safetensors"

    async def handler(context: JobContext) -> dict[str, Any]:
        await fetcher.ensure(context)
        return {"model_bytes": placed.stat().st_size}

    job = await job_queue.submit(
        JobSpec(service_required="comfyui", requirements={"models": ["flux.safetensors"]})
    )
    assert job.status is JobStatus.UNWORKABLE  # nobody has it, nobody can fetch it yet
    worker = Worker(job_queue, "fetcher", caps, handler, WorkerSettings(drain_grace_s=0.5))
    task = asyncio.create_task(worker.run())
    try:
        cursor = STREAM_START
        async with asyncio.timeout(20):
            while (await job_queue.get(job.id)).status is not JobStatus.COMPLETED:
                if events := await job_queue.events.read(cursor, block_ms=200):
                    cursor = events[-1].id
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)

    assert (await job_queue.get(job.id)).result == {"model_bytes": len(data)}
    assert placed.read_bytes() == data
    messages = [
        e.data.get("message") for e in await job_queue.events.read(STREAM_START, count=1000)
    ]
    downloading = [m for m in messages if m and m.startswith("downloading flux.safetensors")]
    assert downloading  # reports are coalesced (ProgressBuffer): some of the ten get through
    percents = [int(m.rsplit(" ", 1)[1].rstrip("%")) for m in downloading]
    assert percents == sorted(percents)
