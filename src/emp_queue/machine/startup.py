"""Startup as data: named steps run in order, each timed and announced.

The monitor shows a booting machine step by step (``machine_startup_step`` with status and
duration), so a slow model download or a failing custom node is visible while it happens,
not guessed from silence.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from emp_queue.errors import EmpError
from emp_queue.machine_models import StartupStep, StepStatus

log = structlog.get_logger(__name__)


class InstallProgress(Protocol):
    """How an installer reports: a short message and, when known, the fraction done."""

    def __call__(self, message: str, fraction: float | None = None) -> Awaitable[None]: ...


class ComponentInstaller(Protocol):
    """Installs one kind of component (custom nodes, or models) from the manifest.

    Must be idempotent: a restarted machine calls it again and expects already-installed
    components to be kept, not fetched twice. Raise an :class:`EmpError` to fail the step.
    """

    async def install(self, progress: InstallProgress) -> None: ...


@dataclass(frozen=True)
class ComponentInstallers:
    """The component manager's two halves; ``None`` skips the step (no manifest)."""

    custom_nodes: ComponentInstaller | None = None
    models: ComponentInstaller | None = None


class MachineStartupError(EmpError):
    """A startup step failed; the message names it. The machine is stopped; fix the cause
    (the step's detail and the service logs say what) and start it again."""


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus = StepStatus.DONE
    detail: str | None = None


StepAction = Callable[[], Awaitable[StepOutcome]]
StepListener = Callable[[StartupStep], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str
    action: StepAction


class StartupSequence:
    """Runs steps in order; tells ``listener`` when each starts and ends."""

    def __init__(self, steps: list[Step], listener: StepListener) -> None:
        self.steps = steps
        self.records = [StartupStep(name=step.name) for step in steps]
        self._listener = listener

    async def run(self) -> None:
        for index, step in enumerate(self.steps):
            record = self.records[index]
            record.status = StepStatus.RUNNING
            await self._listener(record)
            started = time.perf_counter()
            try:
                outcome = await step.action()
            except EmpError as error:
                self._finish(record, started, StepStatus.FAILED, str(error))
                await self._listener(record)
                self._skip_rest(index)
                raise MachineStartupError(f"startup step {step.name!r} failed: {error}") from error
            self._finish(record, started, outcome.status, outcome.detail)
            await self._listener(record)

    async def update(self, name: str, detail: str) -> None:
        """A running step's progress (an installer's message), announced as it comes."""
        for record in self.records:
            if record.name == name:
                record.detail = detail
                await self._listener(record)

    def _skip_rest(self, failed: int) -> None:
        for record in self.records[failed + 1 :]:
            record.status = StepStatus.SKIPPED
            record.detail = "an earlier step failed"

    @staticmethod
    def _finish(
        record: StartupStep, started: float, status: StepStatus, detail: str | None
    ) -> None:
        record.status = status
        record.detail = detail
        record.duration_ms = round((time.perf_counter() - started) * 1000)
        log.info(
            "machine_startup_step", step=record.name, status=str(status), ms=record.duration_ms
        )
