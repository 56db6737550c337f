"""The component manager as the machine agent's "custom nodes" and "models" startup steps.

The agent's steps report ``(message, fraction)`` through an async callable; the manager reports
per component through a synchronous :class:`ProgressCallback`. A :class:`ComponentStep` bridges
the two: it keeps the latest state of every component and forwards a summary from a task of its
own, so a slow event publisher never slows a download.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from emp_queue.machine.components.manager import ComponentKind, ComponentManager, InstallReport


class StepProgress(Protocol):
    """The agent's step progress: a short message and, when known, the fraction done."""

    def __call__(self, message: str, fraction: float | None = None) -> Awaitable[None]: ...


class _Forwarder:
    """A :class:`ProgressCallback` that sums components into one (message, fraction)."""

    def __init__(self, progress: StepProgress) -> None:
        self._progress = progress
        self._components: dict[str, tuple[int, int | None]] = {}
        self._latest: tuple[str, float | None] | None = None
        self._wake = asyncio.Event()

    def __call__(self, component: str, done: int, total: int | None, message: str) -> None:
        self._components[component] = (done, total)
        known = [(d, t) for d, t in self._components.values() if t]
        fraction = sum(d for d, _ in known) / sum(t for _, t in known if t) if known else None
        self._latest = (f"{component}: {message}", fraction)
        self._wake.set()

    async def _forward(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._latest is not None:
                await self._progress(*self._latest)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Forwarder]:
        task = asyncio.create_task(self._forward())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class ComponentStep:
    """One startup step: installs the manifest's custom nodes or its models.

    Fits the agent's ``ComponentInstaller`` protocol: ``await step.install(progress)`` returns
    when every component is in place and raises :class:`ComponentInstallError` (listing each
    failure) otherwise. ``report`` keeps the last run's :class:`InstallReport`.
    """

    def __init__(self, manager: ComponentManager, kind: ComponentKind) -> None:
        self._manager = manager
        self.kind = kind
        self.report: InstallReport | None = None

    async def install(self, progress: StepProgress) -> None:
        async with _Forwarder(progress).running() as forwarder:
            if self.kind is ComponentKind.CUSTOM_NODE:
                report = await self._manager.install_nodes(forwarder)
            else:
                report = await self._manager.install_models(forwarder)
        self.report = report
        report.raise_for_failures()
        await progress(
            f"{len(report.installed)} installed, {len(report.already_present)} already present",
            1.0,
        )
