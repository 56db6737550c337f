"""One reader of the event stream per API replica, shared by every SSE and WebSocket follower.

Without it each follower ran its own blocking ``XREAD`` on a connection of its own and decoded
every event of the fleet: a thousand browsers meant a thousand Redis connections and every
event read a thousand times. The hub reads the stream once, from the first follower to the
last, and hands the decoded events to each follower's bounded queue.

A follower starts from a cursor of its own (a resumed SSE or WebSocket connection starts in
the past): it reads the stream's history itself up to where the hub was when it joined, then
takes the hub's events — every event after its cursor exactly once, in order. A follower that
falls more than ``queue_size`` events behind is not allowed to hold the hub up: its queue is
dropped and it catches up from the stream again on its own, then rejoins.

An app run without its lifespan (tests through ``httpx.ASGITransport``) has no hub running;
its followers read the stream directly, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

import structlog
from redis.exceptions import RedisError

from emp_queue.core.events import Event, EventLog

log = structlog.get_logger(__name__)

READ_COUNT = 500
HUB_BLOCK_MS = 250
"""How long the hub's XREAD waits for events; also how long a stop may wait for the read to end."""


def stream_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class Follower:
    """Reads events after a cursor: history from the stream, then the hub's live events."""

    def __init__(
        self, hub: EventHub | None, events: EventLog, cursor: str, job_id: str | None = None
    ) -> None:
        self._hub = hub
        self._events = events
        self.cursor = cursor
        self.job_id = job_id
        self._live: deque[Event] = deque()
        self._arrived = asyncio.Event()
        self._overflowed = False
        self._catching_up_to: str | None = None  # the hub's cursor when this follower joined

    # Called by the hub -------------------------------------------------------------------
    def _joined(self, hub_cursor: str) -> None:
        self._live.clear()
        self._overflowed = False
        self._catching_up_to = hub_cursor

    def _offer(self, event: Event, limit: int) -> None:
        if self._overflowed:
            return
        if len(self._live) >= limit:
            self._overflowed = True
            self._live.clear()
        else:
            self._live.append(event)
        self._arrived.set()

    # Called by the consumer ----------------------------------------------------------------
    async def read(self, block_ms: int, count: int = READ_COUNT) -> list[Event]:
        """The next events after the cursor (at most ``count``); waits up to ``block_ms`` for
        the first when there are none yet, then returns ``[]``."""
        if self._hub is not None and not self._hub.running:
            self._hub = None  # the hub stopped (shutdown): read the stream directly
        if self._hub is None:
            batch = await self._events.read(self.cursor, count=count, block_ms=block_ms)
            return self._advance(batch)
        if self._overflowed:
            await self._hub._rejoin(self)
        if self._catching_up_to is not None:
            batch = await self._history(count)
            if batch:
                return batch
        if not self._live:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000):
                    await self._arrived.wait()
            if self._overflowed:
                return await self.read(block_ms, count)
        batch = []
        while self._live and len(batch) < count:
            batch.append(self._live.popleft())
        return self._advance(batch)

    async def _history(self, count: int) -> list[Event]:
        """The stream between the cursor and the hub's position when this follower joined."""
        assert self._catching_up_to is not None
        limit = stream_order(self._catching_up_to)
        batch = []
        if stream_order(self.cursor) < limit:
            batch = [
                event
                for event in await self._events.read(self.cursor, count=count)
                if stream_order(event.id) <= limit
            ]
        if not batch:
            self._catching_up_to = None  # caught up: from now on the hub's events
        return self._advance(batch)

    def _advance(self, batch: list[Event]) -> list[Event]:
        """Drop what the cursor already passed (history and hub overlap at the join)."""
        position = stream_order(self.cursor)
        fresh = [event for event in batch if stream_order(event.id) > position]
        if fresh:
            self.cursor = fresh[-1].id
        return fresh


class EventHub:
    def __init__(self, events: EventLog, *, queue_size: int = 10_000) -> None:
        self._events = events
        self._queue_size = queue_size
        self._followers: set[Follower] = set()  # those that want every event
        self._by_job: dict[str, set[Follower]] = {}  # those that want one job's events
        self._cursor: str | None = None  # the last event the hub handed out
        self._wanted = asyncio.Event()
        self._closed = asyncio.Event()
        self._join_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._closed.clear()
        self._task = asyncio.create_task(self._read_while_followed(), name="api-event-hub")

    async def stop(self) -> None:
        """Ends on a flag, not by cancelling a blocking read (decision 0007)."""
        self._closed.set()
        self._wanted.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HUB_BLOCK_MS / 1000 * 3):
                    await asyncio.shield(self._task)
            # Never awaited without a bound: redis-py can swallow the cancellation.
            self._task.cancel()
            await asyncio.wait([self._task], timeout=HUB_BLOCK_MS / 1000)
            self._task = None

    @contextlib.asynccontextmanager
    async def follow(self, cursor: str, job_id: str | None = None) -> AsyncIterator[Follower]:
        """A follower of the stream after ``cursor``, for the duration of the block. With
        ``job_id`` the hub hands it that job's events only (the others may still come from
        the history it reads itself: filter them too)."""
        if not self.running:
            yield Follower(None, self._events, cursor, job_id)
            return
        follower = Follower(self, self._events, cursor, job_id)
        await self._rejoin(follower)
        try:
            yield follower
        finally:
            self._leave(follower)

    async def _rejoin(self, follower: Follower) -> None:
        async with self._join_lock:
            if self._cursor is None:  # the hub was idle: it starts from the stream's end
                self._cursor = await self._events.latest_id()
            follower._joined(self._cursor)
            if follower.job_id is None:
                self._followers.add(follower)
            else:
                self._by_job.setdefault(follower.job_id, set()).add(follower)
            self._wanted.set()

    def _leave(self, follower: Follower) -> None:
        if follower.job_id is None:
            self._followers.discard(follower)
            return
        watching = self._by_job.get(follower.job_id, set())
        watching.discard(follower)
        if not watching:
            self._by_job.pop(follower.job_id, None)

    async def _read_while_followed(self) -> None:
        while not self._closed.is_set():
            if not self._followers and not self._by_job:
                self._cursor = None  # nobody listens: stop reading (and decoding) the stream
                self._wanted.clear()
                await self._wanted.wait()
                continue
            cursor = self._cursor
            assert cursor is not None, "_rejoin sets it before adding a follower"
            try:
                batch = await self._events.read(cursor, count=READ_COUNT, block_ms=HUB_BLOCK_MS)
            except RedisError as error:
                log.warning("event_hub_read_failed", error=str(error))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._closed.wait()
                continue
            if batch and self._cursor is not None:
                self._cursor = batch[-1].id
                for event in batch:
                    for follower in self._followers:
                        follower._offer(event, self._queue_size)
                    for follower in self._by_job.get(event.job_id or "", ()):
                        follower._offer(event, self._queue_size)
