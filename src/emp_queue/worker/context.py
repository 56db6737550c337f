"""``JobContext``: what a job handler gets — the job, its attempt, progress reports, spans."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emp_queue.models import Job
from emp_queue.worker.progress_buffer import ProgressBuffer

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from emp_queue.worker.runtime import Worker


@dataclass
class JobContext:
    """What a handler gets: the job, its attempt, and a way to report progress."""

    job: Job
    attempt: int
    _worker: Worker = field(repr=False)
    _progress: ProgressBuffer = field(init=False, repr=False)
    trace: Context | None = field(default=None, repr=False)
    """The job's trace context when tracing is on (children of the submitting request)."""

    def __post_init__(self) -> None:
        self._progress = ProgressBuffer(
            self._worker.queue,
            self._worker.worker_id,
            self.job.id,
            self.attempt,
            on_stale=functools.partial(self._worker._abandon, self.job.id, attempt=self.attempt),
        )

    async def report_progress(self, progress: float | None, message: str | None = None) -> None:
        """Record progress (0-100): queued and sent in order without waiting for Redis; a
        broker outage delays the report, never fails the job (worker/progress_buffer.py)."""
        if progress is not None and not 0 <= progress <= 100:
            raise ValueError(f"progress {progress!r} is outside 0-100")
        await self._progress.report(progress, message)

    def span(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager[object]:
        """A span inside the job's run (an upload, a step of the connector's own); nothing
        when tracing is off."""
        tracing = self._worker.tracing
        if tracing is None:
            return contextlib.nullcontext()
        return tracing.span(name, {"emp.job_id": self.job.id, **attributes})


JobHandler = Callable[[JobContext], Awaitable[Any]]
