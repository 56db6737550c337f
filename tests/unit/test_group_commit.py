"""GroupCommit: what callers added in one loop turn is stored by one call, results per caller."""

import asyncio
from collections.abc import Sequence

import pytest

from emp_queue.core.group_commit import GroupCommit


class RecordingStore:
    """Doubles each item; remembers the groups it was called with."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.groups: list[list[int]] = []
        self.fail_with = fail_with
        self.release = asyncio.Event()
        self.release.set()
        self.started: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.groups.append(list(items))
        self.started.put_nowait(None)
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 2 for item in items]


async def test_callers_of_one_turn_share_one_store_call_and_get_their_own_result() -> None:
    store = RecordingStore()
    commit = GroupCommit(store)
    results = await asyncio.gather(*(commit.add(n) for n in range(20)))
    assert results == [n * 2 for n in range(20)]
    assert store.groups == [list(range(20))]


async def test_callers_arriving_during_a_store_form_the_next_group_once_it_returns() -> None:
    store = RecordingStore()
    store.release.clear()
    commit = GroupCommit(store)
    first = asyncio.create_task(commit.add(1))
    await store.started.get()
    later = [asyncio.create_task(commit.add(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert store.groups == [[1]], "one store call in flight at a time"
    store.release.set()
    assert [await first, *[await task for task in later]] == [2, 4, 6, 8]
    assert store.groups == [[1], [2, 3, 4]]


async def test_a_store_error_reaches_every_caller_of_the_group() -> None:
    commit = GroupCommit(RecordingStore(fail_with=ConnectionError("redis went away")))
    outcomes = await asyncio.gather(commit.add(1), commit.add(2), return_exceptions=True)
    assert [str(outcome) for outcome in outcomes] == ["redis went away"] * 2
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)


async def test_a_cancelled_caller_does_not_cancel_the_others_store() -> None:
    store = RecordingStore()
    store.release.clear()
    commit = GroupCommit(store)
    impatient = asyncio.create_task(commit.add(1))
    patient = asyncio.create_task(commit.add(2))
    await store.started.get()
    impatient.cancel()
    store.release.set()
    assert await patient == 4
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert store.groups == [[1, 2]]
