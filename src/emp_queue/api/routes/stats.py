"""``GET /api/stats/history``: per-minute activity over the last hour, from the event stream.

The monitor's charts need the past hour at once, before its own live tally has anything to
show. Nothing stores time series: the event stream already holds every transition, so the
route reads the window from it (a bounded number of entries: the stream is trimmed anyway)
and counts per minute. The pending depth of each minute is derived backwards from today's
depth, undoing each later minute's arrivals and departures, so it is an estimate that is
exact as long as the window is fully in the stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field
from redis.exceptions import ResponseError

from emp_queue.api.auth import Operator
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.schemas import ApiModel
from emp_queue.api.state import ApiState, State
from emp_queue.core.events import Event
from emp_queue.core.replies import as_text

router = APIRouter(prefix="/api", tags=["fleet"], responses=KEYED_ERRORS)

MINUTE_MS = 60_000
READ_PAGE = 5_000
MAX_EVENTS = 200_000
"""At most this many entries are read per request (the stream is trimmed near 100,000)."""

# Which events move a job into or out of the waiting (pending) set.
WAITING_STATUSES = frozenset({"pending"})
LEAVING_STATUSES = frozenset({"expired", "unworkable"})


class MinuteOut(ApiModel):
    start_ms: int = Field(description="Start of the minute (ms since the epoch).")
    submitted: int
    completed: int
    failed: int
    cancelled: int
    pending: int = Field(description="Estimated jobs waiting at the end of the minute.")


class HistoryOut(ApiModel):
    minutes: list[MinuteOut] = Field(description="Oldest first; the last is the current minute.")
    complete: bool = Field(
        description="False when the stream did not reach back over the whole window "
        "(trimmed, or over the read bound): early minutes then undercount."
    )


@dataclass
class Tally:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    pending_delta: int = 0
    """Jobs that started waiting minus jobs that stopped waiting during the minute."""


@dataclass
class History:
    start_ms: int
    minutes: int
    tallies: list[Tally] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tallies = [Tally() for _ in range(self.minutes)]

    def add(self, event: Event) -> None:
        index = (int(event.id.split("-")[0]) - self.start_ms) // MINUTE_MS
        if not 0 <= index < self.minutes:
            return
        tally = self.tallies[index]
        status = event.data.get("status")
        match event.type:
            case "job_submitted":
                tally.submitted += 1
                tally.pending_delta += status in WAITING_STATUSES
            case "complete_job":
                tally.completed += 1
            case "job_failed":
                tally.failed += status == "failed"
                tally.pending_delta += status in WAITING_STATUSES
            case "job_cancelled":
                tally.cancelled += 1
                tally.pending_delta -= event.data.get("previous_status") in WAITING_STATUSES
            case "job_assigned":
                tally.pending_delta -= 1
            case "job_status_changed" if status in WAITING_STATUSES:
                tally.pending_delta += 1
            case "job_status_changed" if status in LEAVING_STATUSES:
                tally.pending_delta -= 1

    def rows(self, pending_now: int) -> list[MinuteOut]:
        rows: list[MinuteOut] = []
        pending = pending_now
        for offset in range(self.minutes - 1, -1, -1):
            tally = self.tallies[offset]
            rows.append(
                MinuteOut(
                    start_ms=self.start_ms + offset * MINUTE_MS,
                    submitted=tally.submitted,
                    completed=tally.completed,
                    failed=tally.failed,
                    cancelled=tally.cancelled,
                    pending=max(pending, 0),
                )
            )
            pending -= tally.pending_delta
        rows.reverse()
        return rows


@router.get("/stats/history", summary="Activity per minute")
async def stats_history(
    _caller: Operator,
    state: State,
    minutes: Annotated[int, Query(ge=1, le=60)] = 60,
) -> HistoryOut:
    """Submissions, completions, failures, cancellations and the waiting depth per minute over
    the last `minutes` minutes, counted from the event stream."""
    now_ms = int(time.time() * 1000)
    start_ms = (now_ms // MINUTE_MS - minutes + 1) * MINUTE_MS
    history = History(start_ms, minutes)
    cursor = f"{start_ms - 1}-99999999"
    read = 0
    while read < MAX_EVENTS:
        batch = await state.queue.events.read(cursor, count=READ_PAGE)
        if not batch:
            break
        for event in batch:
            history.add(event)
        read += len(batch)
        cursor = batch[-1].id
    depths = await state.queue.queue_depths()
    pending_now = sum(depth.counts.get("pending", 0) for depth in depths)
    return HistoryOut(
        minutes=history.rows(pending_now),
        complete=read < MAX_EVENTS and await _holds_since(state, start_ms),
    )


async def _holds_since(state: ApiState, start_ms: int) -> bool:
    """Whether the stream still holds every event since ``start_ms``: it was never trimmed,
    or its oldest entry is older than that."""
    key = state.queue.keys.events
    try:
        info: Any = await state.queue.redis.xinfo_stream(key)
    except ResponseError:
        return True  # no stream yet: nothing ever happened, nothing was lost
    if int(info.get("entries-added", -1)) == int(info["length"]):
        return True
    oldest: Any = await state.queue.redis.xrange(key, count=1)
    return bool(oldest) and int(as_text(oldest[0][0]).split("-")[0]) <= start_ms
