"""EventHub: one reader per replica; each follower gets every event after its cursor once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from emp_queue.api.event_hub import EventHub, Follower
from emp_queue.core.events import Event, EventLog
from emp_queue.core.queue import JobQueue


class CountingLog(EventLog):
    """The namespace's event log, counting the blocking reads (those that hold a connection)."""

    def __init__(self, log: EventLog) -> None:
        self.__dict__.update(log.__dict__)
        self.blocking_reads = 0
        self.history_reads = 0

    async def read(
        self, after: str = "0-0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[Event]:
        if block_ms is not None:
            self.blocking_reads += 1
        else:
            self.history_reads += 1
        return await super().read(after, count=count, block_ms=block_ms)


@pytest.fixture
def log(job_queue: JobQueue) -> CountingLog:
    return CountingLog(job_queue.events)


@pytest.fixture
async def hub(log: CountingLog) -> AsyncIterator[EventHub]:
    hub = EventHub(log, queue_size=20)
    hub.start()
    yield hub
    await hub.stop()


async def append(log: EventLog, count: int, start: int = 0) -> list[str]:
    return [await log.append("machine_status", {"n": n}) for n in range(start, start + count)]


@contextlib.asynccontextmanager
async def many_followers(hub: EventHub, cursor: str, count: int) -> AsyncIterator[list[Follower]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(hub.follow(cursor)) for _ in range(count)]


async def collect(follower: Follower, expected: int, timeout_s: float = 10) -> list[Event]:
    received: list[Event] = []
    async with asyncio.timeout(timeout_s):
        while len(received) < expected:
            received += await follower.read(block_ms=200)
    return received


async def test_every_follower_gets_every_event_once_from_one_reader(
    hub: EventHub, log: CountingLog
) -> None:
    start = await log.latest_id()
    async with many_followers(hub, start, 15) as followers:
        reads_before = log.blocking_reads
        ids = await append(log, 12)
        received = await asyncio.gather(*(collect(f, 12) for f in followers))
        reads = log.blocking_reads - reads_before
    assert all([event.id for event in events] == ids for events in received)
    # The hub reads once per batch (at most once per event, plus the read in flight); on
    # their own the followers would each have read at least once.
    assert reads <= 13, f"{reads} blocking reads for 15 followers: only the hub should block"


async def test_a_follower_resuming_in_the_past_misses_and_repeats_nothing(
    hub: EventHub, log: CountingLog
) -> None:
    old = await append(log, 8)
    async with hub.follow(old[2]) as follower:
        writer = asyncio.create_task(append(log, 30, start=8))
        received = await collect(follower, 5 + 30)
        new = await writer
    assert [event.id for event in received] == old[3:] + new


async def test_a_follower_that_falls_behind_catches_up_from_the_stream(
    hub: EventHub, log: CountingLog
) -> None:
    async with hub.follow(await log.latest_id()) as follower:
        ids = await append(log, 70)  # more than the queue of 20 while nobody reads
        await asyncio.sleep(0.3)
        received = await collect(follower, 70)
        later = await append(log, 3, start=70)
        received += await collect(follower, 3)
    assert [event.id for event in received] == ids + later


async def test_without_followers_the_hub_reads_nothing(hub: EventHub, log: CountingLog) -> None:
    async with hub.follow(await log.latest_id()) as follower:
        await append(log, 2)
        await collect(follower, 2)
    await asyncio.sleep(0.05)
    reads = log.blocking_reads
    await append(log, 5)
    await asyncio.sleep(1.2)
    assert log.blocking_reads - reads <= 1, "at most the read in flight when the last one left"


async def test_followers_read_the_stream_themselves_when_no_hub_runs(log: CountingLog) -> None:
    hub = EventHub(log)
    async with hub.follow(await log.latest_id()) as follower:
        ids = await append(log, 3)
        received = await collect(follower, 3)
    assert [event.id for event in received] == ids
    assert log.blocking_reads >= 1


async def test_a_stopped_hub_leaves_its_followers_reading_directly(
    hub: EventHub, log: CountingLog
) -> None:
    async with hub.follow(await log.latest_id()) as follower:
        first = await append(log, 2)
        received = await collect(follower, 2)
        await hub.stop()
        after = await append(log, 2, start=2)
        received += await collect(follower, 2)
    assert [event.id for event in received] == first + after


async def test_a_follower_of_one_job_is_handed_only_that_jobs_events(
    hub: EventHub, log: CountingLog
) -> None:
    async with hub.follow(await log.latest_id(), job_id="job-a") as follower:
        history_reads = log.history_reads
        mine = []
        for n in range(60):  # three times the queue: only job-a's events are queued
            await log.append("update_job_progress", {"n": n}, job_id="job-b")
            if n % 20 == 0:
                mine.append(await log.append("update_job_progress", {"n": n}, job_id="job-a"))
        await asyncio.sleep(0.3)
        received = await collect(follower, 3)
    # Had job-b's 60 events gone to its queue of 20, it would have re-read the stream.
    assert log.history_reads - history_reads <= 1, "caught up from the stream: it overflowed"
    assert [event.id for event in received] == mine
    assert {event.job_id for event in received} == {"job-a"}
