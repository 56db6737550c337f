"""arq: asyncio jobs in a Redis sorted set, polled by ``arq.worker.Worker``."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

from bench.competitors._common import async_mark_done, main, redis_url

MODULE = "bench.competitors.arq_system"
# arq's default max_jobs (10) drains only ~200 jobs/s here: a 0.5 s poll then reads just 100 job
# ids. 100 is ~3.5x faster, beats 500, and matches saq and taskiq's (default) 100 below.
MAX_JOBS = 100


async def noop(ctx: dict[str, Any]) -> None:
    await async_mark_done()


async def _submit(jobs: int, batch: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url()))
    try:
        # arq has no bulk enqueue: each enqueue_job is its own WATCH/MULTI transaction, so the
        # fastest normal path is many of them in flight at once.
        for start in range(0, jobs, batch):
            size = min(batch, jobs - start)
            await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(size)))
    finally:
        await pool.aclose()


def submit(jobs: int, batch: int) -> None:
    asyncio.run(_submit(jobs, batch))


def work() -> None:
    worker = Worker(
        functions=[noop], redis_settings=RedisSettings.from_dsn(redis_url()), max_jobs=MAX_JOBS
    )
    worker.run()


if __name__ == "__main__":
    main(MODULE, submit, work)
