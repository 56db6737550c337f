"""``emp worker``: one worker process serving one connector's service."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError

from emp_queue.connectors.registry import known_connectors
from emp_queue.core.broker import broker_url, connect
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.gc_tuning import freeze_startup_heap
from emp_queue.hardware import HardwareSettings
from emp_queue.machine.components.manifest import load_manifest
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.settings_env import invalid_settings
from emp_queue.storage.settings import StorageSettings, build_asset_storage
from emp_queue.telemetry.tracing import process_tracing
from emp_queue.worker.model_fetch import ModelFetcher
from emp_queue.worker.process import build_worker_process, install_stop_signals
from emp_queue.worker.settings import WorkerProcessSettings


def worker(
    connector: Annotated[
        str | None,
        typer.Option(help="Connector: simulation, comfyui, ollama, openai, a1111, gemini, ..."),
    ] = None,
    service: Annotated[
        list[str] | None,
        typer.Option(help="A service to serve (repeatable; default: the connector's name)."),
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="Unique id (default: host-pid-random).")
    ] = None,
    machine_id: Annotated[str | None, typer.Option(help="The machine this worker runs on.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once: 1 for GPU-bound services.")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="Pool name (fast, standard, heavy...).")] = None,
) -> None:
    """Run a worker: claim jobs its capabilities satisfy and run them through a connector.

    Every option also reads from EMP_WORKER_*; the connector from EMP_<CONNECTOR>_* (for
    example EMP_COMFYUI_URL). SIGTERM drains: running jobs get EMP_WORKER_DRAIN_GRACE_S,
    the rest go back to the queue.
    """
    overrides = {
        name: value
        for name, value in {
            "connector": connector,
            "services": service or None,
            "worker_id": worker_id,
            "machine_id": machine_id,
            "concurrency": concurrency,
            "pool": pool,
        }.items()
        if value is not None
    }
    try:
        settings = WorkerProcessSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise invalid_settings(error, "of the worker") from error
    if settings.connector not in known_connectors():
        raise typer.BadParameter(
            f"unknown connector {settings.connector!r}; known: {', '.join(known_connectors())}",
            param_hint="--connector",
        )
    core = CoreSettings()
    with broker_url(core) as url:
        asyncio.run(_serve(url, settings, core))


async def _model_fetcher() -> ModelFetcher | None:
    """Models the worker may fetch before a job: EMP_COMPONENTS_MANIFEST's (none without)."""
    components = ComponentSettings()
    if not components.manifest:
        return None
    manifest = await load_manifest(components.manifest, timeout_s=components.http_timeout_s)
    return ModelFetcher(components, manifest)


async def _serve(url: str, settings: WorkerProcessSettings, core: CoreSettings) -> None:
    redis = connect(url, namespace=core.namespace)
    try:
        with process_tracing("emp-worker", httpx_calls=True) as tracing:
            queue = JobQueue.from_settings(redis, core)
            storage = build_asset_storage(StorageSettings())
            process = build_worker_process(
                settings, queue, storage, HardwareSettings(), tracing, await _model_fetcher()
            )
            freeze_startup_heap()
            stop = asyncio.Event()
            install_stop_signals(stop)
            await process.run(stop)
    finally:
        await redis.aclose()
