"""The worker's benchmark: pickup latency, what an idle worker costs Redis, throughput.

    python -m bench.worker_bench [--quick] [--write-docs]

A private Valkey (the embedded binary) is started for the run, so Redis's command counters
see only this worker. The worker is a separate process (``--serve``) running the real
``WorkerProcess`` with the simulation connector at zero delay; a probe subclass stamps
the wall-clock time at which the connector starts each job, so pickup latency is measured
from just before ``submit`` to the connector's first line, across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.docs_section import write_section
from bench.harness import cpu_name as _cpu
from bench.harness import percentile
from emp_queue.connectors.base import RunningJob
from emp_queue.connectors.simulation import SimulationConfig, SimulationConnector
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.hardware import HardwareSettings, detect_hardware
from emp_queue.models import JobSpec, JobStatus
from emp_queue.storage.settings import StorageSettings, build_asset_storage
from emp_queue.worker.process import WorkerProcess, install_stop_signals
from emp_queue.worker.settings import WorkerProcessSettings

RESULTS = Path(__file__).parent / "results" / "worker.json"
NAMESPACE = "wbench"
# Commands that are not the worker's own calls: run inside its scripts, or connection set-up.
SCRIPT_OR_SETUP = frozenset({"zrangebyscore", "time", "zadd", "exists", "hset", "hget", "hmget",
                            "zrange", "get", "hello", "smembers", "sadd", "zrem"})  # fmt: skip


class ProbeConnector(SimulationConnector):
    """The simulation connector, stamping when each job reached it."""

    async def run(self, job: RunningJob) -> dict[str, Any]:
        started_ns = time.time_ns()
        result = await super().run(job)
        return {**result, "started_ns": started_ns}


async def serve(url: str, concurrency: int, prefetch: int, worker_id: str) -> None:
    redis = connect(url)
    settings = WorkerProcessSettings(
        connector="simulation",
        worker_id=worker_id,
        concurrency=concurrency,
        prefetch=prefetch,
        progress_interval_s=1.0,
    )
    with tempfile.TemporaryDirectory() as assets:
        process = WorkerProcess(
            settings,
            JobQueue(redis, namespace=NAMESPACE),
            ProbeConnector(SimulationConfig(step_delay_s=0)),
            build_asset_storage(StorageSettings(local_dir=Path(assets))),
            detect_hardware(HardwareSettings(gpu_mode="none")),
        )
        stop = asyncio.Event()
        install_stop_signals(stop)
        await process.run(stop)
    await redis.aclose()


def start_worker(url: str, concurrency: int, prefetch: int = 0) -> subprocess.Popen[bytes]:
    worker_id = f"bench-{concurrency}-{prefetch}"
    command = [sys.executable, "-m", "bench.worker_bench", "--serve", url, str(concurrency)]
    return subprocess.Popen([*command, str(prefetch), worker_id], env={**os.environ})


async def until_registered(queue: JobQueue) -> None:
    while True:
        if await queue.live_workers():
            return
        await asyncio.sleep(0.05)


async def pickup_latency(queue: JobQueue, samples: int) -> dict[str, float]:
    latencies_ms = []
    for _ in range(samples):
        await asyncio.sleep(random.uniform(0.02, 0.05))  # the worker is idle again, waiting
        spec = JobSpec(service_required="simulation", payload={"steps": 0})
        submitted_ns = time.time_ns()
        job = await queue.submit(spec)
        while True:
            done = await queue.get(job.id)
            if done.status == JobStatus.COMPLETED:
                break
            await asyncio.sleep(0.002)
        latencies_ms.append((done.result["started_ns"] - submitted_ns) / 1e6)
    return {
        "samples": samples,
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
    }


async def idle_commands(url: str, idle_s: float) -> dict[str, Any]:
    redis = connect(url)
    await asyncio.sleep(2)  # let start-up traffic pass
    await redis.config_resetstat()
    await asyncio.sleep(idle_s)
    stats: dict[str, Any] = await redis.info("commandstats")
    await redis.aclose()
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    }
    per_minute = {name: round(n * 60 / idle_s, 1) for name, n in calls.items()}
    return {
        "idle_s": idle_s,
        "per_minute": per_minute,
        "total_per_minute": sum(per_minute.values()),
    }


async def throughput(queue: JobQueue, jobs: int) -> float:
    specs = [JobSpec(service_required="simulation", payload={"steps": 0}) for _ in range(jobs)]
    start = time.perf_counter()
    for offset in range(0, jobs, 5000):
        await queue.submit_many(specs[offset : offset + 5000])
    while True:
        if (await queue.stats()).get("simulation", {}).get("completed", 0) >= jobs:
            break
        await asyncio.sleep(0.01)
    return jobs / (time.perf_counter() - start)


async def with_worker(url: str, concurrency: int, prefetch: int, action: Any) -> Any:
    redis = connect(url)
    queue = JobQueue(redis, namespace=NAMESPACE)
    process = start_worker(url, concurrency, prefetch)
    try:
        await until_registered(queue)
        return await action(queue)
    finally:
        process.terminate()
        process.wait(timeout=30)
        await redis.flushall()  # our private server only
        await redis.aclose()


def run(quick: bool) -> dict[str, Any]:
    samples, idle_s, jobs = (100, 10.0, 2000) if quick else (500, 60.0, 20_000)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as data, EmbeddedValkey(Path(data), persistent=False) as vk:
        print("pickup latency ...", flush=True)
        results["pickup"] = asyncio.run(
            with_worker(vk.url, 1, 0, lambda q: pickup_latency(q, samples))
        )
        print("idle worker ...", flush=True)
        results["idle"] = asyncio.run(
            with_worker(vk.url, 1, 0, lambda q: idle_commands(vk.url, idle_s))
        )
        results["throughput"] = []
        for concurrency, prefetch in ((1, 0), (10, 0), (10, 10)):
            print(f"throughput concurrency={concurrency} prefetch={prefetch} ...", flush=True)
            rate = asyncio.run(
                with_worker(vk.url, concurrency, prefetch, lambda q: throughput(q, jobs))
            )
            results["throughput"].append(
                {"concurrency": concurrency, "prefetch": prefetch, "jobs": jobs,
                 "jobs_per_s": round(rate)}
            )  # fmt: skip
    return results


def render(results: dict[str, Any]) -> str:
    pickup, idle = results["pickup"], results["idle"]
    busiest = sorted(idle["per_minute"].items(), key=lambda item: -item[1])
    lines = [
        f"Measured {results['date']} on {results['machine']} with `{results['command']}`.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| pickup latency p50 (submit → connector start, idle worker, {pickup['samples']} jobs) "
        f"| **{pickup['p50_ms']} ms** | ≤ 3 ms |",
        f"| pickup latency p99 | **{pickup['p99_ms']} ms** (max {pickup['max_ms']} ms) | ≤ 15 ms |",
        f"| Redis commands per minute, one idle worker ({idle['idle_s']:g} s observed) "
        f"| **{idle['total_per_minute']:g}** | no polling |",
    ]
    for row in results["throughput"]:
        lines.append(
            f"| throughput, simulation at zero delay, concurrency {row['concurrency']}, "
            f"prefetch {row['prefetch']} ({row['jobs']:,} jobs) | **{row['jobs_per_s']:,} jobs/s** "
            "| — |"
        )
    round_trips = sum(n for name, n in busiest if "|" not in name and name not in SCRIPT_OR_SETUP)
    lines += ["", "Idle commands by kind (per minute, as Redis counts them: the commands run "
              "inside the scripts are included): "
              + ", ".join(f"`{name}` {n:g}" for name, n in busiest) + ". "
              f"Round trips from the worker: about {round_trips:g} per minute — one heartbeat "
              "every 5 s, a sweep every 15 s, a safety claim every 30 s and the connection's "
              "health-check pings; new work arrives over pub/sub."]  # fmt: skip
    return "\n".join(lines)


def write_docs(text: str) -> None:
    write_section("worker-bench", "Worker (issue 4)", text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--render":
        write_docs(render(json.loads(RESULTS.read_text())))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        url, concurrency, prefetch, worker_id = sys.argv[2:6]
        asyncio.run(serve(url, int(concurrency), int(prefetch), worker_id))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.worker_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    results = run(args.quick)
    results["date"] = time.strftime("%Y-%m-%d")
    results["machine"] = f"{platform.machine()}, {platform.python_version()}, " + _cpu()
    results["command"] = "python -m bench.worker_bench" + (" --quick" if args.quick else "")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    text = render(results)
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
