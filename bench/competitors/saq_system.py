"""saq: asyncio jobs in Redis lists/sorted sets, run by ``saq.Worker``."""

from __future__ import annotations

import asyncio

from saq import Queue, Worker
from saq.types import Context

from bench.competitors._common import async_mark_done, main, redis_url

MODULE = "bench.competitors.saq_system"
# saq's default concurrency is 10; 100 concurrent no-op coroutines matches arq and taskiq here.
CONCURRENCY = 100


async def noop(ctx: Context) -> None:
    await async_mark_done()


async def _submit(jobs: int, batch: int) -> None:
    queue = Queue.from_url(redis_url())
    try:
        # saq's only bulk helper (map) waits for results, so submission is concurrent enqueue
        # calls; saq itself caps them at max_concurrent_ops (20) Redis operations in flight.
        for start in range(0, jobs, batch):
            size = min(batch, jobs - start)
            await asyncio.gather(*(queue.enqueue("noop") for _ in range(size)))
    finally:
        await queue.disconnect()


def submit(jobs: int, batch: int) -> None:
    asyncio.run(_submit(jobs, batch))


async def _work() -> None:
    # Mirrors saq.worker.start(): connect, run until a signal, disconnect.
    queue = Queue.from_url(redis_url())
    worker = Worker(queue, functions=[noop], concurrency=CONCURRENCY)
    try:
        await queue.connect()
        await worker.start()
    finally:
        await queue.disconnect()


def work() -> None:
    asyncio.run(_work())


if __name__ == "__main__":
    main(MODULE, submit, work)
