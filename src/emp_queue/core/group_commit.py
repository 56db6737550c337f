"""``GroupCommit``: items added during one turn of the event loop are stored by one call.

An API replica under load runs many submit handlers at once; each one on its own would pay
a Redis round trip and a script call. Here the first item of a turn schedules a flush for the
next turn, the items added meanwhile join it, and every caller gets its own result (or the
error of the call that stored them). A lone caller waits one extra loop turn, nothing more.

The flush runs in a task of its own, so a caller that gives up (its request cancelled) does
not cancel the others' store: its item is stored anyway, as it would have been had the
caller been cancelled during its own Redis call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(self, store: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]]) -> None:
        """``store`` takes the items in the order they were added and returns one result per
        item, in the same order."""
        self._store = store
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flushing: set[asyncio.Task[None]] = set()

    async def add(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        group, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._commit(group))
        self._flushing.add(task)  # the loop keeps only a weak reference to tasks
        task.add_done_callback(self._flushing.discard)

    async def _commit(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._store([item for item, _ in group])
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as error:  # handed to every caller of the group
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
