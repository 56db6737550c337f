"""rq: synchronous jobs in Redis lists, run by ``rq.SimpleWorker``."""

from __future__ import annotations

from redis import Redis
from rq import Queue, SimpleWorker

from bench.competitors._common import main, mark_done, redis_url

MODULE = "bench.competitors.rq_system"
# Named by import path: in the driver this module is __main__, which the worker can't import.
NOOP = f"{MODULE}.noop"


def noop() -> None:
    mark_done()


def submit(jobs: int, batch: int) -> None:
    queue = Queue(connection=Redis.from_url(redis_url()))
    for start in range(0, jobs, batch):
        size = min(batch, jobs - start)
        # enqueue_many writes the whole batch in one Redis pipeline.
        queue.enqueue_many([Queue.prepare_data(NOOP) for _ in range(size)])


def work() -> None:
    # rq's default Worker forks a work horse per job, which would measure fork() rather than the
    # queue; SimpleWorker runs jobs in-process, one at a time (rq has no in-process concurrency).
    connection = Redis.from_url(redis_url())
    worker = SimpleWorker([Queue(connection=connection)], connection=connection)
    worker.work(logging_level="WARNING")


if __name__ == "__main__":
    main(MODULE, submit, work)
