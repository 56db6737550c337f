"""Dispatch latency: submit → the connector starts, and submit → the caller sees completion.

    python -m bench.dispatch_latency [--samples 1000] [--write-docs]

A private Valkey (the embedded binary); one real ``WorkerProcess`` in a separate process
(``bench.worker_bench --serve``: the simulation connector at zero delay, its probe stamping the
wall clock when the connector starts a job), idle between jobs; the caller uses the core API
(``JobQueue``) and submits one job at a time with ``submit_and_wait``: the script that
finishes the job publishes the finished record on the caller's own channel
(``core/finish_notices.py``); the figure ends when the caller has it, result included. Between
jobs a pause of 5 to 20 ms lets the worker go back to waiting (so every job meets an idle
worker, listed and woken as in decision 0048). The submit goes through the same group commit
(``core/group_commit.py``) that batches concurrent submits under load: a lone caller pays one
extra event-loop turn for it.

The floor on the same server, the same machine and hour (``--floor``, on by default): the least
a Python queue can do here, a bare list queue with redis-py — the caller ``LPUSH``es a job, a
worker process blocked in ``BRPOP`` takes it, stamps the clock and ``LPUSH``es the answer, which
the caller's ``BRPOP`` brings back; same pacing, same connection options (``connect()``). No
lease, no matching, no record, no event: what is left is the processes' and the server's own
wake-ups and round trips, which the issue's "fastest Python queues" figure is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.docs_section import write_section
from bench.harness import cpu_name, percentile
from bench.worker_bench import NAMESPACE, start_worker, until_registered
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.core.replies import as_text
from emp_queue.models import Job, JobSpec

RESULTS = Path(__file__).parent / "results" / "dispatch_latency.json"
FLOOR_QUEUE = "floor:jobs"


async def floor_worker(url: str) -> None:
    """The bare list queue's worker (``--floor-worker``): take, stamp, answer, until 'stop'."""
    redis = connect(url)
    try:
        while True:
            taken = await redis.brpop([FLOOR_QUEUE], timeout=0)
            job = as_text(taken[1]) if taken else ""
            if job == "stop":
                return
            await redis.lpush(f"floor:done:{job}", str(time.time_ns()))
    finally:
        await redis.aclose()


def start_floor_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.dispatch_latency", "--floor-worker", url])


async def measure_floor(url: str, samples: int) -> dict[str, Any]:
    redis = connect(url)
    worker = start_floor_worker(url)
    completion_ms: list[float] = []
    start_ms: list[float] = []
    try:
        for sample in range(samples):
            await asyncio.sleep(random.uniform(0.005, 0.02))
            submitted_ns = time.time_ns()
            await redis.lpush(FLOOR_QUEUE, str(sample))
            answer = await redis.brpop([f"floor:done:{sample}"], timeout=10)
            if answer is None:
                raise RuntimeError("the bare queue's worker did not answer within 10 s")
            completion_ms.append((time.time_ns() - submitted_ns) / 1e6)
            start_ms.append((int(answer[1]) - submitted_ns) / 1e6)
    finally:
        await redis.lpush(FLOOR_QUEUE, "stop")
        worker.wait(timeout=30)
        await redis.aclose()
    return {
        "floor_completion_p50_ms": round(percentile(completion_ms, 0.5), 3),
        "floor_completion_p99_ms": round(percentile(completion_ms, 0.99), 3),
        "floor_start_p50_ms": round(percentile(start_ms, 0.5), 3),
    }


async def paced_job(queue: JobQueue) -> tuple[int, Job, int]:
    """One job after a pause that lets the worker go back to waiting: when it was submitted,
    the finished job, when the caller had it (``time.time_ns()``)."""
    await asyncio.sleep(random.uniform(0.005, 0.02))
    spec = JobSpec(service_required="simulation", payload={"steps": 0})
    submitted_ns = time.time_ns()
    done = await queue.submit_and_wait(spec, timeout_s=10)
    return submitted_ns, done, time.time_ns()


@contextlib.asynccontextmanager
async def queue_with_idle_worker(url: str) -> AsyncIterator[JobQueue]:
    """The caller's queue on ``url`` with one registered worker process (concurrency 1, no
    prefetch); the worker stopped and the server (a private one) emptied after."""
    redis = connect(url)
    queue = JobQueue(redis, namespace=NAMESPACE)
    worker = start_worker(url, 1, 0)
    try:
        await until_registered(queue)
        yield queue
    finally:
        await queue.close()
        worker.terminate()
        worker.wait(timeout=30)
        await redis.flushall()  # our private server only
        await redis.aclose()


async def measure(url: str, samples: int) -> dict[str, Any]:
    completion_ms: list[float] = []
    start_ms: list[float] = []
    after_ms: list[float] = []  # connector start → the caller has the finished job
    async with queue_with_idle_worker(url) as queue:
        for _ in range(samples):
            submitted_ns, done, seen_ns = await paced_job(queue)
            completion_ms.append((seen_ns - submitted_ns) / 1e6)
            start_ms.append((done.result["started_ns"] - submitted_ns) / 1e6)
            after_ms.append((seen_ns - done.result["started_ns"]) / 1e6)
    return {
        "samples": samples,
        "completion_p50_ms": round(percentile(completion_ms, 0.5), 3),
        "completion_p99_ms": round(percentile(completion_ms, 0.99), 3),
        "start_p50_ms": round(percentile(start_ms, 0.5), 3),
        "start_p99_ms": round(percentile(start_ms, 0.99), 3),
        "after_start_p50_ms": round(percentile(after_ms, 0.5), 3),
    }


def render(results: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Measured {results['date']} on {results['machine']} with `{results['command']}`"
            f" (load average {results['load']:.1f} when it ended).",
            "",
            "| figure (idle worker, core API, sequential jobs) | p50 | p99 | target |",
            "|---|---|---|---|",
            f"| submit → caller has the finished job ({results['samples']} jobs) "
            f"| **{results['completion_p50_ms']} ms** | **{results['completion_p99_ms']} ms** "
            "| p50 ≤ 0.6 ms, p99 ≤ 1.5 ms |",
            f"| submit → connector start | **{results['start_p50_ms']} ms** "
            f"| {results['start_p99_ms']} ms | p50 ≤ 0.5 ms |",
            "",
            "The rest (p50, both ends on this machine's clock): connector start → the caller has "
            f"the finished job {results['after_start_p50_ms']} ms.",
            *floor_lines(results),
        ]
    )


def floor_lines(results: dict[str, Any]) -> list[str]:
    if "floor_completion_p50_ms" not in results:
        return []
    ratio = results["completion_p50_ms"] / results["floor_completion_p50_ms"]
    return [
        "",
        "The floor on the same server, same pacing, measured in the same run (a bare `LPUSH`/"
        "`BRPOP` list queue with redis-py, no lease, record or event): submit → caller has the "
        f"answer **{results['floor_completion_p50_ms']} ms** p50 / "
        f"{results['floor_completion_p99_ms']} ms p99, submit → its worker starts "
        f"{results['floor_start_p50_ms']} ms p50; emp's submit → finished job p50 is "
        f"**{ratio:.1f}x** the floor.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch_latency", description=__doc__)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the bare list queue's reference figures"
    )
    parser.add_argument("--floor-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_worker:
        asyncio.run(floor_worker(args.floor_worker))
        return
    with tempfile.TemporaryDirectory() as data, EmbeddedValkey(Path(data), persistent=False) as vk:
        results = asyncio.run(measure(vk.url, args.samples))
        if not args.no_floor:
            results |= asyncio.run(measure_floor(vk.url, args.samples))
    results["date"] = time.strftime("%Y-%m-%d")
    results["machine"] = f"{platform.machine()}, {platform.python_version()}, " + cpu_name()
    results["command"] = f"python -m bench.dispatch_latency --samples {args.samples}" + (
        " --no-floor" if args.no_floor else ""
    )
    results["load"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    text = render(results)
    print(text)
    if args.write_docs:
        write_section("dispatch-latency-bench", "Dispatch latency (issue 18)", text)


if __name__ == "__main__":
    main()
