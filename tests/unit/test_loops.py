"""Background loops end on their flag; a loop that refuses to end cannot hang its owner."""

from __future__ import annotations

import asyncio
import time

from emp_queue.loops import LoopGroup, stopped_within


async def test_loops_end_on_the_flag_without_being_cancelled() -> None:
    rounds: list[int] = []
    cancelled = asyncio.Event()

    async def polite(stopping: asyncio.Event) -> None:
        try:
            while not await stopped_within(stopping, 0.01):
                rounds.append(1)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    group = LoopGroup()
    group.start(polite, "polite")
    await asyncio.sleep(0.05)
    assert await group.close(timeout_s=1.0) == []
    assert rounds
    assert not cancelled.is_set()


async def test_a_loop_that_swallows_cancellation_is_abandoned_within_the_bound() -> None:
    release = asyncio.Event()

    async def stubborn(_stopping: asyncio.Event) -> None:
        # What redis-py can do when a cancellation lands inside a command: swallow it.
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    group = LoopGroup()
    group.start(stubborn, "stubborn")
    started = time.monotonic()
    abandoned = await group.close(timeout_s=0.1)
    assert abandoned == ["stubborn"]
    assert time.monotonic() - started < 1.0
    release.set()
