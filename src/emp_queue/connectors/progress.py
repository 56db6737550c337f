"""Progress for streamed generations: token counts turned into a bar that never goes backward.

LLM services stream tokens but rarely say how many are coming. When the request sets a token
limit the fraction is tokens-so-far over that limit; without one it follows ``n / (n + k)``,
which moves quickly at first, slows down, and never reaches 1 before the stream says done.
Every token may report: the worker merges reports closer than ``EMP_WORKER_PROGRESS_INTERVAL_S``
before they reach Redis (``worker/running_job.py``), so nothing is throttled twice.
"""

from __future__ import annotations

from emp_queue.connectors.base import RunningJob

UNBOUNDED_HALF_WAY_TOKENS = 200
"""Without a limit, the estimate shows half way after this many tokens."""
BEFORE_DONE_CEILING = 0.99
"""The most a running generation shows: 1.0 is kept for the end of the stream."""


def token_fraction(tokens: int, limit: int | None) -> float:
    """How far a generation of ``tokens`` so far is, given the request's limit (if any)."""
    if limit is not None and limit > 0:
        estimate = tokens / limit
    else:
        estimate = tokens / (tokens + UNBOUNDED_HALF_WAY_TOKENS)
    return min(estimate, BEFORE_DONE_CEILING)


class ProgressGauge:
    """Forwards a job's progress, never lower than before.

    ``span(start, end)`` maps the next phase's own 0..1 into part of the bar, so a job with
    several phases (download a model, then generate) still moves forward only.
    """

    def __init__(self, job: RunningJob) -> None:
        self._job = job
        self._start = 0.0
        self._end = 1.0
        self._shown = 0.0

    def span(self, start: float, end: float) -> None:
        """Map the next reports' fractions into ``[start, end]`` of the job's bar."""
        self._start, self._end = start, end

    async def report(self, fraction: float, message: str) -> None:
        """Report ``fraction`` of the current phase (never below what was shown)."""
        overall = self._start + (self._end - self._start) * min(max(fraction, 0.0), 1.0)
        self._shown = max(overall, self._shown)
        await self._job.progress(self._shown, message)

    async def done(self, message: str = "done") -> None:
        await self.report(1.0, message)

    async def note(self, message: str) -> None:
        """A message without a fraction (a status change of a remote job)."""
        await self._job.progress(None, message)
