"""taskiq: asyncio tasks in a Redis stream via taskiq-redis, run by taskiq's worker."""

from __future__ import annotations

import asyncio

from taskiq.cli.common_args import LogLevel
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import run_worker
from taskiq_redis import RedisStreamBroker

from bench.competitors._common import async_mark_done, main, redis_url

MODULE = "bench.competitors.taskiq_system"
# taskiq's default max_async_tasks (100), in one worker process (`taskiq worker --workers 1`).
MAX_ASYNC_TASKS = 100

# The stream broker is the one taskiq-redis recommends (it acks, like the other four queues).
# consumer_id="0" starts the consumer group at the stream's head: the default "$" would skip
# every job submitted before the worker first started.
broker = RedisStreamBroker(url=redis_url(), consumer_id="0")


@broker.task(task_name="noop")
async def noop() -> None:
    await async_mark_done()


async def _submit(jobs: int, batch: int) -> None:
    await broker.startup()
    try:
        for start in range(0, jobs, batch):
            size = min(batch, jobs - start)
            await asyncio.gather(*(noop.kiq() for _ in range(size)))
    finally:
        await broker.shutdown()


def submit(jobs: int, batch: int) -> None:
    asyncio.run(_submit(jobs, batch))


def work() -> None:
    args = WorkerArgs(
        broker=f"{MODULE}:broker",
        modules=[],
        workers=1,
        max_async_tasks=MAX_ASYNC_TASKS,
        log_level=LogLevel.WARNING,
    )
    run_worker(args)


if __name__ == "__main__":
    main(MODULE, submit, work)
