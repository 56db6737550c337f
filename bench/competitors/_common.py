"""Shared driver for one competitor run; imported only inside that competitor's subprocess.

Every system module calls :func:`main` with its own ``submit`` and ``work`` functions:

* ``python -m bench.competitors.<system> drive --jobs N --batch B`` submits the jobs, starts
  the worker subprocess, waits for the drain and prints one JSON line with the timings.
* ``python -m bench.competitors.<system> worker`` runs that library's worker until killed.

The Redis URL comes from ``URL_ENV`` rather than argv because tasks need it at import time in
processes the libraries spawn or import on their own (taskiq's worker children, rq's job lookup).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import cast

import redis
import redis.asyncio

URL_ENV = "EMP_BENCH_REDIS_URL"
# How a job reports that it ran, the same for every system (no reliance on five different
# result/status APIs): "count" (default) — the no-op task counts in the worker's memory and
# the last one INCRBYs the total, so a job costs no I/O of its own, as the scenario says;
# "incr" — every task INCRs the key (one extra Redis round trip per job, for every system).
DONE_MODE_ENV = "EMP_BENCH_DONE"
JOBS_ENV = "EMP_BENCH_JOBS"
DONE_KEY = "emp_bench:done"
_POLL_S = 0.005
_WORKER_STOP_S = 5.0


def redis_url() -> str:
    return os.environ[URL_ENV]


@functools.cache
def _sync_client() -> redis.Redis:
    return redis.Redis.from_url(redis_url())


@functools.cache
def _async_client() -> redis.asyncio.Redis:
    # Created lazily inside the worker's running event loop; each worker process has one loop.
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(redis_url())
    return client


def _incr_each() -> bool:
    return os.environ.get(DONE_MODE_ENV, "count") == "incr"


_counted = 0
_count_lock = threading.Lock()  # dramatiq runs tasks on several threads


def _count_one() -> int:
    """Count a finished task; returns the total to publish when it was the last one, else 0."""
    global _counted
    with _count_lock:
        _counted += 1
        expected = int(os.environ[JOBS_ENV])
        return _counted if _counted == expected else 0


def mark_done() -> None:
    if _incr_each():
        _sync_client().incr(DONE_KEY)
    elif total := _count_one():
        _sync_client().incrby(DONE_KEY, total)


async def async_mark_done() -> None:
    if _incr_each():
        await _async_client().incr(DONE_KEY)
    elif total := _count_one():
        await _async_client().incrby(DONE_KEY, total)


def _done_count() -> int:
    raw = cast(bytes | None, _sync_client().get(DONE_KEY))
    return int(raw) if raw is not None else 0


def _wait_for_drain(worker: subprocess.Popen[bytes], jobs: int) -> None:
    while _done_count() < jobs:
        if worker.poll() is not None:
            raise RuntimeError(f"worker exited early with code {worker.returncode}")
        time.sleep(_POLL_S)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(_WORKER_STOP_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _drive(module: str, submit: Callable[[int, int], None], jobs: int, batch: int) -> None:
    start = time.perf_counter()
    submit(jobs, batch)
    submit_s = time.perf_counter() - start

    os.environ[JOBS_ENV] = str(jobs)  # inherited by the worker, which counts its tasks
    start = time.perf_counter()
    # The worker's own output goes to stderr so stdout carries only the JSON result line.
    worker = subprocess.Popen([sys.executable, "-m", module, "worker"], stdout=sys.stderr)
    try:
        _wait_for_drain(worker, jobs)
        drain_s = time.perf_counter() - start
    finally:
        _stop(worker)
    print(json.dumps({"submit_s": submit_s, "drain_s": drain_s}), flush=True)


def main(module: str, submit: Callable[[int, int], None], work: Callable[[], None]) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    commands = parser.add_subparsers(dest="command", required=True)
    drive = commands.add_parser("drive", help="submit jobs, run one worker, print timings")
    drive.add_argument("--jobs", type=int, required=True)
    drive.add_argument("--batch", type=int, required=True)
    commands.add_parser("worker", help="run this library's worker until terminated")
    args = parser.parse_args()
    # Per-job INFO logging would dominate a no-op benchmark, so every library runs at WARNING.
    logging.basicConfig(level=logging.WARNING)
    if args.command == "drive":
        _drive(module, submit, args.jobs, args.batch)
    else:
        work()
