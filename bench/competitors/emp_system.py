"""emp-job-queue itself, through the same driver as the competitors.

The worker is the project's ``Worker`` runtime — the code path a real worker uses: batch
claims up to its free slots, a handler per job, batched acknowledgements.
"""

from __future__ import annotations

import asyncio
import signal

from bench.competitors._common import async_mark_done, main, redis_url
from emp_queue.core.broker import connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, WorkerCapabilities
from emp_queue.worker import JobContext, Worker, WorkerSettings

MODULE = "bench.competitors.emp_system"
NAMESPACE = "bench"
WORKER_ID = "bench-worker"
CAPABILITIES = WorkerCapabilities(services=["noop"])
# Same in-flight budget as arq, saq and taskiq get here (100 concurrent no-op coroutines).
CONCURRENCY = 100
PREFETCH = 100


async def noop(context: JobContext) -> None:
    await async_mark_done()


async def _submit(jobs: int, batch: int) -> None:
    redis = connect(redis_url())
    queue = JobQueue(redis, namespace=NAMESPACE)
    # The worker is known before the jobs arrive (as in a running fleet), so the jobs are
    # pending rather than unworkable; the worker process registers again under this id.
    await queue.register_worker(WORKER_ID, CAPABILITIES)
    try:
        for start in range(0, jobs, batch):
            await queue.submit_many(
                [JobSpec(service_required="noop") for _ in range(min(batch, jobs - start))]
            )
    finally:
        await redis.aclose()


def submit(jobs: int, batch: int) -> None:
    asyncio.run(_submit(jobs, batch))


async def _work() -> None:
    redis = connect(redis_url())
    worker = Worker(
        JobQueue(redis, namespace=NAMESPACE),
        WORKER_ID,
        CAPABILITIES,
        noop,
        WorkerSettings(concurrency=CONCURRENCY, prefetch=PREFETCH),
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    try:
        await worker.run()
    finally:
        await redis.aclose()


def work() -> None:
    import os

    if os.environ.get("UVL"):
        import uvloop

        uvloop.run(_work())
    else:
        asyncio.run(_work())


if __name__ == "__main__":
    main(MODULE, submit, work)
