"""Progress reports that ride out a broker outage instead of failing the job.

A failover makes a progress report raise ``ConnectionError``, a frozen server makes it
wait forever; raised into the handler, that turned a running job into a "crash" and cost
it an attempt. Here a report that Redis did not take is kept (the newest ``PENDING_MAX``,
in order) and sent again every ``BROKER_RETRY_S`` by one background task of the job's, until
Redis answers or the attempt ends. The handler never waits on an outage and never sees it.
A report Redis refuses as stale (cancelled, superseded) is dropped, as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import structlog
from redis.exceptions import RedisError

from emp_queue.core.queue import JobQueue
from emp_queue.errors import StaleAttemptError

log = structlog.get_logger(__name__)

PENDING_MAX = 100
"""Reports kept while Redis is out of reach; older ones are dropped first."""
BROKER_RETRY_S = 1.0
REPORT_WAIT_S = 2.0
"""How long a handler waits on a report before it is kept for later: a frozen Redis (a
stalled primary) does not fail a call, it never answers it."""

Report = tuple[float | None, str | None]


class ProgressBuffer:
    """The progress reports of one attempt: sent at once when Redis answers, else kept."""

    def __init__(self, queue: JobQueue, worker_id: str, job_id: str, attempt: int) -> None:
        self._queue = queue
        self._worker_id = worker_id
        self._job_id = job_id
        self._attempt = attempt
        self._pending: collections.deque[Report] = collections.deque(maxlen=PENDING_MAX)
        self._resender: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    async def report(self, progress: float | None, message: str | None) -> None:
        if self._resender is not None and not self._resender.done():
            self._pending.append((progress, message))  # after the older ones, in order
            return
        try:
            async with asyncio.timeout(REPORT_WAIT_S):
                await self._send((progress, message))
        except (RedisError, TimeoutError) as error:
            log.warning(
                "progress_report_deferred", job_id=self._job_id, error=str(error) or "no answer"
            )
            self._pending.append((progress, message))
            self._resender = asyncio.create_task(self._resend(), name=f"progress-{self._job_id}")

    async def _send(self, report: Report) -> None:
        progress, message = report
        await self._queue.report_progress(
            self._worker_id, self._job_id, self._attempt, progress, message
        )

    async def _resend(self) -> None:
        """Send the kept reports in order; ends on the attempt's end, never by cancellation."""
        while self._pending and not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BROKER_RETRY_S):
                    await self._closed.wait()
            if self._closed.is_set():
                return
            try:
                while self._pending:
                    await self._send(self._pending[0])
                    self._pending.popleft()
            except StaleAttemptError:
                self._pending.clear()
            except RedisError as error:
                log.info("progress_report_retry_failed", job_id=self._job_id, error=str(error))
        log.info("progress_reports_caught_up", job_id=self._job_id)

    def close(self) -> None:
        """The attempt ended: stop resending (what was kept is outdated by its outcome). The
        resender ends on the flag; the cancel only cuts short a call Redis is not answering
        (and if redis-py swallows it, the flag still ends the loop after that call)."""
        self._closed.set()
        if self._resender is not None and not self._resender.done():
            self._resender.cancel()
