"""Background loops that end on a flag, and a close that is bounded (decision 0007).

redis-py can swallow a ``CancelledError`` that lands inside a command, so a loop that is only
ever cancelled may never end, and an owner that awaits it hangs (``emp api`` needed SIGKILL in
3 of 16 chaos runs). A :class:`LoopGroup` hands every loop the same ``stopping`` event; its
:meth:`LoopGroup.close` sets it, waits a bounded time, cancels what is left, waits a bounded
time again, and then abandons (and logs) a loop that still refuses, instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def stopped_within(stopping: asyncio.Event, delay_s: float) -> bool:
    """Sleep ``delay_s`` unless ``stopping`` is set first; True when it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await stopping.wait()
    return stopping.is_set()


class LoopGroup:
    """Owns background loops; each gets the group's ``stopping`` event and must return on it."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stop: list[Callable[[], None]] = []

    def start(self, loop: Loop, name: str, *, on_stop: Callable[[], None] | None = None) -> None:
        """Run ``loop(stopping)``; ``on_stop`` is for a loop that ends on a flag of its own."""
        self._tasks.append(asyncio.create_task(loop(self.stopping), name=name))
        if on_stop is not None:
            self._on_stop.append(on_stop)

    async def close(self, timeout_s: float) -> list[str]:
        """Stop every loop within about ``2 * timeout_s``; the names of loops abandoned."""
        self.stopping.set()
        for stop in self._on_stop:
            stop()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout_s)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("loop_failed", loop=task.get_name(), exc_info=task.exception())
        abandoned = sorted(task.get_name() for task in pending)
        if abandoned:
            log.warning("loops_abandoned", loops=abandoned, timeout_s=timeout_s)
        return abandoned
