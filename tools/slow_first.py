"""Where the slow tests go in a pytest-xdist run, so that no worker ends the tier on one.

With ``--dist worksteal`` xdist hands the collection out in contiguous chunks, one per worker
(the first gets ``n // k`` items, the next ``(n - that) // (k - 1)``, and so on), each worker
runs its chunk in order, and idle workers steal from the end of the longest queue. In random
order a slow test (4 to 15 s: the OpenAPI fuzz parts, the Lua agreement tests, the service
health tests that wait out real timeouts) often came last in its chunk, and the tier ended with
one worker running it while the others were done (measured: 57.9 to 66.8 s for the same
tests). :func:`slow_first` puts the slow tests at the starts of the chunks, round robin, and
keeps every other test in its (random) order; the tests mark themselves
``@pytest.mark.slow``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunk_sizes(count: int, workers: int) -> list[int]:
    """The sizes of xdist's first hand-out (``WorkStealingScheduling.check_schedule``)."""
    sizes = []
    remaining = count
    for index in range(workers):
        size = remaining // (workers - index)
        sizes.append(size)
        remaining -= size
    return sizes


def slow_first(items: Sequence[T], is_slow: Callable[[T], bool], workers: int) -> list[T]:
    """``items`` reordered so that each of ``workers`` chunks starts with its share of the slow
    ones (unchanged when the run is not distributed)."""
    if workers < 2:
        return list(items)
    slow = [item for item in items if is_slow(item)]
    rest = iter([item for item in items if not is_slow(item)])
    shares: list[list[T]] = [slow[index::workers] for index in range(workers)]
    ordered: list[T] = []
    for share, size in zip(shares, chunk_sizes(len(items), workers), strict=True):
        ordered += share
        ordered += [item for _, item in zip(range(size - len(share)), rest, strict=False)]
    ordered += list(rest)
    return ordered
