"""Progress for streamed generations: token counts turned into a bar that never goes backward.

LLM services stream tokens but rarely say how many are coming. When the request sets a token
limit the fraction is tokens-so-far over that limit; without one it follows ``n / (n + k)``,
which moves quickly at first, slows down, and never reaches 1 before the stream says done.
Reports are throttled: a worker forwards each one to Redis, and a token arrives every few
milliseconds.
"""

from __future__ import annotations

import time

from emp_queue.connectors.base import RunningJob

UNBOUNDED_HALF_WAY_TOKENS = 200
"""Without a limit, the estimate shows half way after this many tokens."""
BEFORE_DONE_CEILING = 0.99
"""The most a running generation shows: 1.0 is kept for the end of the stream."""
REPORT_INTERVAL_S = 0.25


def token_fraction(tokens: int, limit: int | None) -> float:
    """How far a generation of ``tokens`` so far is, given the request's limit (if any)."""
    if limit is not None and limit > 0:
        estimate = tokens / limit
    else:
        estimate = tokens / (tokens + UNBOUNDED_HALF_WAY_TOKENS)
    return min(estimate, BEFORE_DONE_CEILING)


class ProgressGauge:
    """Forwards a job's progress at most every ``interval_s``, never lower than before.

    ``span(start, end)`` maps the next phase's own 0..1 into part of the bar, so a job with
    several phases (download a model, then generate) still moves forward only.
    """

    def __init__(self, job: RunningJob, interval_s: float = REPORT_INTERVAL_S) -> None:
        self._job = job
        self._interval_s = interval_s
        self._start = 0.0
        self._end = 1.0
        self._shown = -1.0
        self._reported_at = 0.0

    def span(self, start: float, end: float) -> None:
        """Map the next reports' fractions into ``[start, end]`` of the job's bar."""
        self._start, self._end = start, end

    async def report(self, fraction: float, message: str, *, force: bool = False) -> None:
        """Report ``fraction`` of the current phase unless one was sent very recently."""
        overall = self._start + (self._end - self._start) * min(max(fraction, 0.0), 1.0)
        overall = max(overall, self._shown, 0.0)
        now = time.monotonic()
        if not force and self._shown >= 0 and now - self._reported_at < self._interval_s:
            return
        self._shown = overall
        self._reported_at = now
        await self._job.progress(overall, message)

    async def done(self, message: str = "done") -> None:
        await self.report(1.0, message, force=True)

    async def note(self, message: str) -> None:
        """A message without a fraction (a status change of a remote job)."""
        await self._job.progress(None, message)
