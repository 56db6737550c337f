"""Progress reports sent behind the handler's back: it never waits on Redis for them.

A report is queued and the attempt's sender task sends the queue in order, one call at a
time, while the handler goes on. Waiting for each report's round trip put a Redis call in
front of every job's result (a connector reports "started" first): for a short job that was
a third of the way from the claim to the completion (docs/benchmarks.md, "Dispatch latency").

A failover makes a send raise ``ConnectionError``, a frozen server makes it wait forever
(a send gives up after ``REPORT_WAIT_S``); the report is then kept (the newest
``PENDING_MAX``, in order) and sent again every ``BROKER_RETRY_S`` until Redis answers or
the attempt ends. The handler never waits on an outage and never sees it. A report Redis
refuses as stale (cancelled, superseded, finished elsewhere) is dropped with the ones behind
it, and ``on_stale`` is told, so the worker abandons the attempt (as a handler that awaited
its report used to learn from the error).

When the attempt ends, reports not yet sent are dropped: its outcome (sent at the same time)
supersedes them, and a job that finishes before its first report went out (a short one)
costs no progress call at all. A report already on its way may arrive after the outcome;
Redis refuses it as stale, nothing more.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable

import structlog
from redis.exceptions import RedisError

from emp_queue.core.queue import JobQueue
from emp_queue.errors import StaleAttemptError

log = structlog.get_logger(__name__)

PENDING_MAX = 100
"""Reports kept while Redis is out of reach (or slower than the handler); older ones are
dropped first."""
BROKER_RETRY_S = 1.0
REPORT_WAIT_S = 2.0
"""How long one send waits for an answer before the report is kept for later: a frozen
Redis (a stalled primary) does not fail a call, it never answers it."""

Report = tuple[float | None, str | None]


class ProgressBuffer:
    """The progress reports of one attempt, sent in order by a task of their own."""

    def __init__(
        self,
        queue: JobQueue,
        worker_id: str,
        job_id: str,
        attempt: int,
        on_stale: Callable[[str], None] | None = None,
    ) -> None:
        self._queue = queue
        self._on_stale = on_stale
        self._worker_id = worker_id
        self._job_id = job_id
        self._attempt = attempt
        self._pending: collections.deque[Report] = collections.deque(maxlen=PENDING_MAX)
        self._sender: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._failing = False  # the last send failed: the sender waits to try again

    async def report(self, progress: float | None, message: str | None) -> None:
        """Queue a report; it is sent after the ones queued before it."""
        if self._closed.is_set():
            return
        self._pending.append((progress, message))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(
                self._send_pending(), name=f"progress-{self._job_id}"
            )

    async def _send_pending(self) -> None:
        """Send the queue in order; ends when it is empty, never by cancellation alone."""
        while self._pending:
            if self._closed.is_set():
                return  # the attempt ended: its outcome supersedes what is left
            report = self._pending.popleft()
            try:
                async with asyncio.timeout(REPORT_WAIT_S):
                    await self._send(report)
            except StaleAttemptError as stale:
                self._pending.clear()
                if self._on_stale is not None and not self._closed.is_set():
                    self._on_stale(stale.reason)
                return
            except (RedisError, TimeoutError) as error:
                if len(self._pending) < PENDING_MAX:
                    self._pending.appendleft(report)
                if not self._failing:
                    log.warning(
                        "progress_report_deferred",
                        job_id=self._job_id,
                        error=str(error) or "no answer",
                    )
                self._failing = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BROKER_RETRY_S):
                        await self._closed.wait()
                continue
            if self._failing:
                self._failing = False
                log.info("progress_reports_caught_up", job_id=self._job_id)

    async def _send(self, report: Report) -> None:
        progress, message = report
        await self._queue.report_progress(
            self._worker_id, self._job_id, self._attempt, progress, message
        )

    def close(self) -> None:
        """The attempt ended: reports not yet sent are dropped. During an outage the cancel
        cuts short a call Redis is not answering (if redis-py swallows it, the flag still
        ends the loop after that call)."""
        self._closed.set()
        self._pending.clear()
        if self._failing and self._sender is not None and not self._sender.done():
            self._sender.cancel()
