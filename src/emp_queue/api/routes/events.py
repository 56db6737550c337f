"""``GET /api/jobs/{id}/events``: one job's events as Server-Sent Events, resumable.

Every SSE ``id`` is the event's stream entry id. A client that reconnects with
``Last-Event-ID`` (browsers do it on their own) gets every later event of the job exactly
once: the stream is read from that id, never from "now". The response ends after the job's
terminal event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.sse import EventSourceResponse, ServerSentEvent

from emp_queue.api.auth import ClientOrAdmin, Principal
from emp_queue.api.error_handlers import STREAM_ERRORS
from emp_queue.api.routes.jobs import VisibleJob
from emp_queue.api.schemas import EventOut
from emp_queue.api.state import ApiState, State
from emp_queue.core.events import STREAM_ID_PATTERN, Event
from emp_queue.errors import JobNotFoundError
from emp_queue.models import JobStatus

router = APIRouter(prefix="/api", tags=["jobs"], responses=STREAM_ERRORS)

BLOCK_MS = 1000
READ_COUNT = 500
TERMINAL_EVENTS = frozenset({"complete_job", "job_cancelled"})
TERMINAL_STATUSES = frozenset(status.value for status in JobStatus if status.is_terminal)


def is_terminal(event: Event) -> bool:
    return event.type in TERMINAL_EVENTS or event.data.get("status") in TERMINAL_STATUSES


def start_cursor(
    job: VisibleJob,
    last_event_id: Annotated[
        str | None,
        Header(
            pattern=STREAM_ID_PATTERN,
            description="The last event id received (an SSE `id`), to resume after it.",
        ),
    ] = None,
) -> str:
    """Where to read from: after the client's last id, never before the job existed.

    Stream ids start with the millisecond they were written, and nothing about a job is
    written before its ``created_at``, so older entries need not be read at all.
    """
    before_job = f"{max(job.created_at - 1, 0)}-0"
    if last_event_id is None:
        return before_job
    return max(before_job, last_event_id, key=lambda i: tuple(int(p) for p in i.split("-")))


def sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(data=EventOut.model_validate(event), event=event.type, id=event.id)


async def stream_slot(caller: ClientOrAdmin, state: State) -> AsyncIterator[Principal]:
    """One of the caller's open streams (429 past ``max_streams_per_key``), for as long as
    the response streams."""
    with state.authenticator.streams.hold(caller):
        yield caller


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse, summary="Job events")
async def job_events(
    job: VisibleJob,
    cursor: Annotated[str, Depends(start_cursor)],
    caller: Annotated[Principal, Depends(stream_slot)],
    state: State,
) -> AsyncIterator[ServerSentEvent]:
    """The job's events so far, then live, as `text/event-stream`; ends after its terminal
    event, or within seconds of its key's revocation. Resume with the `Last-Event-ID` header."""
    revocation = RevocationCheck(state, caller)
    async with state.hub.follow(cursor, job_id=job.id) as follower:
        while True:
            if not await revocation.still_valid():
                return
            batch = await follower.read(block_ms=BLOCK_MS, count=READ_COUNT)
            for event in batch:
                if event.job_id == job.id:
                    yield sse(event)
                    if is_terminal(event):
                        return
            if not batch and await _finished(state, job.id):
                break
    # Finished while we were caught up: deliver what the stream still holds, then stop.
    events = state.queue.events
    while batch := await events.read(follower.cursor, count=READ_COUNT):
        for event in batch:
            follower.cursor = event.id
            if event.job_id == job.id:
                yield sse(event)


class RevocationCheck:
    """Looks up a stream's key at most every ``revocation_check_s``."""

    def __init__(self, state: ApiState, principal: Principal) -> None:
        self._authenticator = state.authenticator
        self._principal = principal
        self._every_s = state.settings.revocation_check_s
        self._next = time.monotonic() + self._every_s

    async def still_valid(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return True
        self._next = now + self._every_s
        return await self._authenticator.is_current(self._principal)


async def _finished(state: ApiState, job_id: str) -> bool:
    """True when the job is terminal or gone (its terminal event may have been trimmed)."""
    try:
        job = await state.queue.get(job_id)
    except JobNotFoundError:
        return True
    return job.status.is_terminal
