"""The core engine's benchmark: matching, scaling, head-of-line, memory, throughput.

    python -m bench.core_bench [--quick] [--write-docs]

Runs against a private Valkey (the embedded binary, no persistence) that it starts and
stops itself, so the competitors' keys and FLUSHALL never touch a shared server. Results go
to ``bench/results/core.json``; ``--write-docs`` also rewrites the results section of
``docs/benchmarks.md``. Sizes are those of the issue unless ``--quick`` shrinks them (for a
smoke run; quick figures are not the published ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.competitors import COMPETITORS, OURS, ThroughputResult, reset_server, run_competitor
from bench.docs_section import write_section
from bench.harness import percentile, private_valkey, save, stamped
from emp_queue.core.broker import connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, WorkerCapabilities

RESULTS = Path(__file__).parent / "results" / "core.json"


@dataclass(frozen=True)
class Sizes:
    matching_jobs: int = 100_000
    classes: int = 1_000
    small_queue: int = 1_000
    large_queue: int = 1_000_000
    claims: int = 2_000
    head_of_line: int = 100_000
    memory_jobs: int = 100_000
    throughput_jobs: int = 20_000


QUICK = Sizes(20_000, 1_000, 1_000, 50_000, 500, 20_000, 20_000, 5_000)


async def submit_all(queue: JobQueue, specs: Callable[[int], JobSpec], count: int) -> float:
    start = time.perf_counter()
    for offset in range(0, count, 2_000):
        await queue.submit_many([specs(n) for n in range(offset, min(count, offset + 2_000))])
    return count / (time.perf_counter() - start)


def slot_job(n: int, classes: int) -> JobSpec:
    return JobSpec(
        service_required="sim", requirements={"positive_requirements": {"slot": f"s{n % classes}"}}
    )


async def claim_latencies_ms(queue: JobQueue, worker_id: str, claims: int) -> list[float]:
    """Claim one job, release it (it keeps its place), repeat: the queue stays the same size."""
    samples = []
    for _ in range(claims):
        start = time.perf_counter()
        [claimed] = await queue.claim(worker_id)
        samples.append((time.perf_counter() - start) * 1000)
        await queue.release(worker_id, claimed.job.id, claimed.attempt, "benchmark")
    return samples


async def slotted_queue(redis: Redis, namespace: str, jobs: int, classes: int) -> JobQueue:
    """``jobs`` over ``classes`` classes; a specialist worker matches 1 % of the classes."""
    queue = JobQueue(redis, namespace=namespace, events_maxlen=10_000)
    await queue.purge()
    everything = {"slot": [f"s{n}" for n in range(classes)]}
    await queue.register_worker(
        "generalist", WorkerCapabilities(services=["sim"], labels=everything)
    )
    one_percent = {"slot": [f"s{n}" for n in range(0, classes, 100)]}
    await queue.register_worker(
        "specialist", WorkerCapabilities(services=["sim"], labels=one_percent)
    )
    await submit_all(queue, lambda n: slot_job(n, classes), jobs)
    return queue


async def matching(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    queue = await slotted_queue(redis, "bench-matching", sizes.matching_jobs, sizes.classes)
    samples = await claim_latencies_ms(queue, "specialist", sizes.claims)
    await queue.purge()
    return {
        "pending": sizes.matching_jobs,
        "classes": sizes.classes,
        "claims": len(samples),
        "p50_ms": statistics.median(samples),
        "p99_ms": percentile(samples, 0.99),
    }


async def scaling(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    p50: dict[int, float] = {}
    for pending in (sizes.small_queue, sizes.large_queue):
        queue = await slotted_queue(redis, "bench-scaling", pending, sizes.classes)
        p50[pending] = statistics.median(
            await claim_latencies_ms(queue, "specialist", sizes.claims)
        )
        await queue.purge()
    small, large = sizes.small_queue, sizes.large_queue
    return {
        "small_pending": small,
        "large_pending": large,
        "small_p50_ms": p50[small],
        "large_p50_ms": p50[large],
        "ratio": p50[large] / p50[small],
    }


async def head_of_line(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    queue = JobQueue(redis, namespace="bench-hol", events_maxlen=10_000)
    await queue.purge()
    await queue.register_worker(
        "big", WorkerCapabilities(services=["sim"], hardware={"gpu_memory_gb": 80})
    )
    await queue.register_worker("small", WorkerCapabilities(services=["sim"]))
    heavy = JobSpec(
        service_required="sim", priority=90, requirements={"hardware": {"gpu_memory_gb": 48}}
    )
    await submit_all(queue, lambda _n: heavy, sizes.head_of_line)
    light = await queue.submit(JobSpec(service_required="sim", priority=10))
    start = time.perf_counter()
    claimed = await queue.claim("small")
    latency_ms = (time.perf_counter() - start) * 1000
    await queue.purge()
    return {
        "ahead": sizes.head_of_line,
        "first_claim_got_it": bool(claimed) and claimed[0].job.id == light.id,
        "claim_ms": latency_ms,
    }


async def memory(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    queue = JobQueue(redis, namespace="bench-memory", events_maxlen=1_000)
    await queue.purge()
    await queue.register_worker("w", WorkerCapabilities(services=["sim"]))
    await queue.submit(JobSpec(service_required="sim"))  # the fixed keys exist before measuring
    before = (await redis.info("memory"))["used_memory"]
    rate = await submit_all(queue, lambda _n: JobSpec(service_required="sim"), sizes.memory_jobs)
    after = (await redis.info("memory"))["used_memory"]
    events = await redis.memory_usage(queue.keys.events) or 0
    await queue.purge()
    return {
        "jobs": sizes.memory_jobs,
        "bytes_per_job": (after - before) / sizes.memory_jobs,
        "events_stream_bytes": events,
        "submit_jobs_per_s": rate,
    }


def throughput(url: str, sizes: Sizes, systems: tuple[str, ...]) -> list[dict[str, Any]]:
    results = []
    for system in systems:
        reset_server(url, owned=True)
        result: ThroughputResult = run_competitor(system, url, jobs=sizes.throughput_jobs)
        results.append({**asdict(result), "jobs_per_s": result.jobs_per_s})
        print(f"  {system}: {result.status}, {result.jobs_per_s:,.0f} jobs/s", flush=True)
    reset_server(url, owned=True)
    return results


async def run_async(url: str, sizes: Sizes) -> dict[str, Any]:
    redis = connect(url)
    try:
        results: dict[str, Any] = {}
        steps: list[tuple[str, Callable[[Redis, Sizes], Awaitable[dict[str, Any]]]]] = [
            ("matching", matching),
            ("head_of_line", head_of_line),
            ("memory", memory),
            ("scaling", scaling),
        ]
        for name, step in steps:
            print(f"{name} ...", flush=True)
            results[name] = await step(redis, sizes)
            print(f"  {json.dumps(results[name])}", flush=True)
        return results
    finally:
        await redis.aclose()


def markdown(results: dict[str, Any]) -> str:
    m, s, h, mem = (results[k] for k in ("matching", "scaling", "head_of_line", "memory"))
    lines = [
        f"Run {results['date']} on {results['machine']}; command: `{results['command']}`.",
        "",
        "| Measure | Target | Result |",
        "|---|---|---|",
        f"| Claim p99, {m['pending']:,} pending over {m['classes']:,} classes, worker matching 1 % "
        f"| ≤ 2 ms | **{m['p99_ms']:.2f} ms** (p50 {m['p50_ms']:.2f} ms, {m['claims']:,} claims) |",
        f"| Claim p50 at {s['large_pending']:,} ÷ p50 at {s['small_pending']:,} pending | ≤ 1.5 "
        f"| **{s['ratio']:.2f}** ({s['large_p50_ms']:.2f} ms vs {s['small_p50_ms']:.2f} ms) |",
        f"| Only runnable job behind {h['ahead']:,} unrunnable ones | first claim "
        f"| **{'yes' if h['first_claim_got_it'] else 'NO'}** ({h['claim_ms']:.2f} ms) |",
        f"| Redis bytes per pending job (no payload) | ≤ 600 | **{mem['bytes_per_job']:.0f}** |",
        "",
        "Throughput: submit 20,000 no-op jobs in batches, then one worker process drains them "
        "(drain jobs/s; the worker's start-up is inside the drain time for every system).",
        "",
        "| System | Submit s | Drain s | Drain jobs/s | Status |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(results["throughput"], key=lambda r: -r["jobs_per_s"]):
        lines.append(
            f"| {row['system']} | {row['submit_s']:.2f} | {row['drain_s']:.2f} "
            f"| {row['jobs_per_s']:,.0f} | {row['status']} |"
        )
    ours = [r["jobs_per_s"] for r in results["throughput"] if r["system"] == OURS]
    others = [r["jobs_per_s"] for r in results["throughput"] if r["system"] != OURS]
    if ours and others:
        lines += ["", f"emp / best competitor: **{ours[0] / max(others):.2f}x** (target >= 2x); "
                  f"emp drain: **{ours[0]:,.0f} jobs/s** (target >= 5,000)."]  # fmt: skip
    return "\n".join(lines)


def write_docs(text: str) -> None:
    write_section("core-bench", "Core engine (issue 2)", text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--systems", default=",".join((OURS, *COMPETITORS)))
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    with private_valkey() as url:
        results = asyncio.run(run_async(url, sizes))
        print("throughput ...", flush=True)
        results["throughput"] = throughput(url, sizes, tuple(args.systems.split(",")))
    save(RESULTS, stamped(results, "./dev bench" + (" --quick" if args.quick else "")))
    text = markdown(results)
    print(text)
    if args.write_docs and not args.quick:
        write_docs(text)


if __name__ == "__main__":
    main()
