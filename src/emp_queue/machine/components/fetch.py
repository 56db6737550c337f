"""One manifest model, fetched on demand: by the worker before a job that needs it
(``worker/model_fetch.py``) and by the machine agent's placement
(``machine/placement_loop.py``). Progress goes to an async callback, once per tenth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import PurePosixPath
from typing import Any

import httpx

from emp_queue.http_tls import tls_context
from emp_queue.machine.components.downloads import GB, ModelDownloader, free_bytes
from emp_queue.machine.components.manifest import Manifest, ModelSpec
from emp_queue.machine.components.settings import ComponentSettings

OnFraction = Callable[[float], Coroutine[Any, Any, None]]


def model_name(spec: ModelSpec) -> str:
    """The name a job and a service use for the model: its file name (``sdxl.safetensors``)."""
    return PurePosixPath(spec.dest).name


def find_model(manifest: Manifest, name: str) -> ModelSpec | None:
    """The manifest entry for ``name`` (its file name or its component name)."""
    return next((s for s in manifest.models if name in (s.name, model_name(s))), None)


def fits_on_disk(settings: ComponentSettings, spec: ModelSpec) -> bool:
    """A model of known size that leaves the disk reserve free (unknown sizes: no)."""
    if spec.size is None:
        return False
    reserve = int(settings.disk_reserve_gb * GB)
    return spec.size <= free_bytes(settings.cache_dir) - reserve


async def fetch_model(
    settings: ComponentSettings, spec: ModelSpec, on_fraction: OnFraction
) -> tuple[bool, str]:
    """Download (if needed, verified) and place the model; (whether anything was done, what)."""
    fractions: asyncio.Queue[float | None] = asyncio.Queue()
    tenths = [0]

    def report(component: str, done: int, total: int | None, message: str) -> None:
        # The downloader's callback is sync: queue the tenths, one consumer sends them in order.
        if total and done * 10 // total > tenths[0]:
            tenths[0] = done * 10 // total
            fractions.put_nowait(done / total)

    async def send() -> None:
        while (fraction := await fractions.get()) is not None:
            await on_fraction(fraction)

    sender = asyncio.create_task(send())
    try:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(settings.http_timeout_s),
            follow_redirects=True,
            verify=tls_context(),
        ) as client:
            downloader = ModelDownloader(settings, client)
            return await downloader.install(await downloader.plan(spec), report)
    finally:
        fractions.put_nowait(None)
        await sender
