"""The component manager: installs a manifest's custom nodes and models, reporting each.

One component failing does not stop the others: the report says which were installed, which
were already present and which failed (with the cause), and the caller decides whether a
failure stops the machine (:meth:`InstallReport.raise_for_failures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import httpx
import structlog
from rich.console import Console

from emp_queue.http_tls import tls_context
from emp_queue.machine.components.downloads import ModelDownloader, ModelPlan, check_disk
from emp_queue.machine.components.errors import ComponentError, ComponentInstallError
from emp_queue.machine.components.manifest import Manifest, load_manifest
from emp_queue.machine.components.nodes import NodeInstaller
from emp_queue.machine.components.progress import (
    FanOut,
    ProgressCallback,
    RichProgressBar,
    Throttled,
    ignore_progress,
)
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.machine.components.state import ComponentState

log = structlog.get_logger(__name__)

Job = Callable[[ProgressCallback], Awaitable[tuple[bool, str]]]
"""Installs one component; returns (whether anything was done, a short description)."""


class ComponentKind(StrEnum):
    CUSTOM_NODE = "custom_node"
    MODEL = "model"


class OutcomeStatus(StrEnum):
    INSTALLED = "installed"
    ALREADY_PRESENT = "already_present"
    FAILED = "failed"


@dataclass(frozen=True)
class ComponentOutcome:
    kind: ComponentKind
    name: str
    status: OutcomeStatus
    detail: str
    duration_s: float


@dataclass(frozen=True)
class InstallReport:
    """What happened to each component of one install."""

    outcomes: tuple[ComponentOutcome, ...] = ()

    def _names(self, status: OutcomeStatus) -> tuple[str, ...]:
        return tuple(outcome.name for outcome in self.outcomes if outcome.status is status)

    @property
    def installed(self) -> tuple[str, ...]:
        return self._names(OutcomeStatus.INSTALLED)

    @property
    def already_present(self) -> tuple[str, ...]:
        return self._names(OutcomeStatus.ALREADY_PRESENT)

    @property
    def failed(self) -> tuple[ComponentOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status is OutcomeStatus.FAILED)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __add__(self, other: InstallReport) -> InstallReport:
        return InstallReport(self.outcomes + other.outcomes)

    def raise_for_failures(self) -> None:
        """Raise :class:`ComponentInstallError` listing every failed component, if any."""
        if self.failed:
            # Most causes already name their component; the others (OSError) get it here.
            lines = [
                f"- {o.detail}"
                if repr(o.name) in o.detail
                else f"- {o.kind} {o.name!r}: {o.detail}"
                for o in self.failed
            ]
            raise ComponentInstallError(
                f"{len(self.failed)} of {len(self.outcomes)} components failed:\n"
                + "\n".join(lines)
            )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, for events and ``--json`` output."""
        return {"ok": self.ok, "outcomes": [asdict(outcome) for outcome in self.outcomes]}


class ComponentManager:
    """Installs custom nodes and models from the manifest named by the settings (or given).

    ``install_nodes`` and ``install_models`` back the machine agent's "custom nodes" and
    "models" startup steps (through :class:`~emp_queue.machine.components.ComponentStep`);
    ``install`` does both.
    """

    def __init__(
        self,
        settings: ComponentSettings,
        *,
        environ: Mapping[str, str] | None = None,
        console: Console | None = None,
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._console = console or Console()
        self._manifest: Manifest | None = None

    async def manifest(self) -> Manifest:
        """The settings' manifest, read once; an empty one when no manifest is configured."""
        if self._manifest is None:
            source = self._settings.manifest
            if source is None:
                log.info("component_manifest_unset")
                self._manifest = Manifest()
            else:
                self._manifest = await load_manifest(
                    source, timeout_s=self._settings.http_timeout_s
                )
        return self._manifest

    async def install(
        self, manifest: Manifest | None = None, progress: ProgressCallback | None = None
    ) -> InstallReport:
        nodes = await self.install_nodes(progress, manifest=manifest)
        return nodes + await self.install_models(progress, manifest=manifest)

    async def install_nodes(
        self, progress: ProgressCallback | None = None, *, manifest: Manifest | None = None
    ) -> InstallReport:
        """Install the manifest's custom nodes, ``parallelism`` at a time."""
        specs = (manifest or await self.manifest()).custom_nodes
        if not specs:
            return InstallReport()
        state = ComponentState.load(self._settings.resolved_state_file)
        environ = os.environ if self._environ is None else self._environ
        installer = NodeInstaller(self._settings, state, environ)
        jobs = [(spec.name, functools.partial(installer.install, spec)) for spec in specs]
        with self._reporter(progress, byte_names=()) as report:
            return await self._run(ComponentKind.CUSTOM_NODE, jobs, report)

    async def install_models(
        self, progress: ProgressCallback | None = None, *, manifest: Manifest | None = None
    ) -> InstallReport:
        """Download the manifest's missing models, ``parallelism`` at a time.

        The models whose sizes are known are checked against free disk space together, before
        any download starts; if they do not fit, each of them fails and none is started.
        """
        specs = (manifest or await self.manifest()).models
        if not specs:
            return InstallReport()
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self._settings.http_timeout_s),
            follow_redirects=True,
            verify=tls_context(),
        ) as client:
            downloader = ModelDownloader(self._settings, client)
            plans = [await downloader.plan(spec) for spec in specs]
            refused = self._refuse_if_disk_short(plans)
            if refused is not None:
                return refused
            jobs = [(p.spec.name, functools.partial(downloader.install, p)) for p in plans]
            with self._reporter(progress, byte_names=[spec.name for spec in specs]) as report:
                return await self._run(ComponentKind.MODEL, jobs, report)

    def _refuse_if_disk_short(self, plans: list[ModelPlan]) -> InstallReport | None:
        needed = sum(plan.remaining_bytes or 0 for plan in plans if not plan.cached)
        missing = [plan.spec.name for plan in plans if not plan.cached]
        if needed == 0:
            return None  # nothing of known size to fetch; unknown sizes are checked one by one
        try:
            check_disk(self._settings, needed, f"{len(missing)} model(s) to download")
        except ComponentError as error:
            log.error("component_disk_short", models=missing, error=str(error))
            return InstallReport(
                tuple(
                    ComponentOutcome(
                        ComponentKind.MODEL,
                        plan.spec.name,
                        OutcomeStatus.FAILED if not plan.cached else OutcomeStatus.ALREADY_PRESENT,
                        str(error) if not plan.cached else "not checked: disk check failed",
                        0.0,
                    )
                    for plan in plans
                )
            )
        return None

    @contextlib.contextmanager
    def _reporter(
        self, progress: ProgressCallback | None, byte_names: Collection[str]
    ) -> Iterator[ProgressCallback]:
        callback = Throttled(progress or ignore_progress)
        if not self._console.is_terminal:
            yield callback
            return
        with RichProgressBar(self._console, byte_components=byte_names) as bar:
            yield FanOut([callback, bar])

    async def _run(
        self, kind: ComponentKind, jobs: Sequence[tuple[str, Job]], progress: ProgressCallback
    ) -> InstallReport:
        limit = asyncio.Semaphore(self._settings.parallelism)

        async def one(name: str, job: Job) -> ComponentOutcome:
            async with limit:
                started = time.monotonic()
                try:
                    changed, detail = await job(progress)
                except (ComponentError, OSError) as error:
                    log.error("component_install_failed", kind=kind, name=name, error=str(error))
                    progress(name, 0, None, f"failed: {error}")
                    return ComponentOutcome(
                        kind, name, OutcomeStatus.FAILED, str(error), time.monotonic() - started
                    )
                status = OutcomeStatus.INSTALLED if changed else OutcomeStatus.ALREADY_PRESENT
                return ComponentOutcome(kind, name, status, detail, time.monotonic() - started)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(name, job)) for name, job in jobs]
        return InstallReport(tuple(task.result() for task in tasks))
