"""dramatiq: messages in Redis via ``RedisBroker``, consumed by a threaded ``dramatiq.Worker``."""

from __future__ import annotations

import signal
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.competitors._common import main, mark_done, redis_url

MODULE = "bench.competitors.dramatiq_system"
# One process with dramatiq's default 8 threads (the CLI's --processes 1 --threads 8): measured
# ~6x faster than 1 thread (it overlaps Redis round trips) and faster than 32 (GIL contention).
THREADS = 8

broker = RedisBroker(url=redis_url())  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", max_retries=0)
def noop() -> None:
    mark_done()


def submit(jobs: int, batch: int) -> None:
    # dramatiq has no bulk or pipelined enqueue (group().run() also enqueues one message at a
    # time), so every send is one round trip and the batch size has no effect.
    del batch
    for _ in range(jobs):
        noop.send()


def work() -> None:
    worker = dramatiq.Worker(broker, worker_threads=THREADS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main(MODULE, submit, work)
