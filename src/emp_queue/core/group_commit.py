"""``GroupCommit``: concurrent callers' items are stored together, one call per group.

An API replica under load runs many submit handlers at once; each one on its own would pay
a Redis round trip and a script call. Here one store call is in flight at a time: the items
added during a turn of the event loop form the first group, and those that arrive while a
group is being stored form the next one, stored as soon as the call returns. Under load the
groups grow with the load (the round trip is what they wait for anyway); a lone caller waits
one extra loop turn, nothing more. Every caller gets its own result, or the error of the
call that stored its group.

The store runs in a task of its own, so a caller that gives up (its request cancelled) does
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
        self._committer: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._committer is None:
            # The task's first step runs after the callbacks already queued for this turn,
            # so the callers of this turn join its first group.
            self._committer = asyncio.create_task(self._commit_while_pending())
        return await future

    async def _commit_while_pending(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                await self._commit(group)
        finally:
            self._committer = None
            for _, future in self._pending:  # only when cancelled, at shutdown
                future.cancel()
            self._pending = []

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
