"""Listing benchmark (#19 item 6): GET /api/jobs's filters at 100,000 and 1,000,000 jobs.

    python -m bench.listing_bench [--sizes 100000,1000000] [--write-docs]

For each size, a private Valkey (embedded, no persistence) gets that many jobs over 4
services and 10 customers; 90 % are claimed and completed, 10 cancelled (the rare status the
audit looked for), the rest wait. Then each filter of the list route is timed through
``JobQueue.list_jobs`` (what the route calls): the first page and the 20th (following the
cursors), 50 jobs a page, median of 15 reads each. Flat means the 1,000,000 column is close
to the 100,000 one. Also the memory the listing indexes take per job.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.docs_section import write_section
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, JobStatus, WorkerCapabilities

SERVICES = ("svc-a", "svc-b", "svc-c", "svc-d")
CUSTOMERS = tuple(f"cust-{i}" for i in range(10))
CANCELLED = 10
LIMIT = 50
READS = 15
DEEP_PAGE = 20

FILTERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("no filter", {}),
    ("status=cancelled (10 jobs)", {"status": JobStatus.CANCELLED}),
    ("status=completed", {"status": JobStatus.COMPLETED}),
    ("status=pending", {"status": JobStatus.PENDING}),
    ("service", {"service": "svc-b"}),
    ("customer", {"customer_id": "cust-3"}),
    ("status+service", {"status": JobStatus.COMPLETED, "service": "svc-b"}),
    ("status+customer", {"status": JobStatus.COMPLETED, "customer_id": "cust-3"}),
    ("service+customer", {"service": "svc-b", "customer_id": "cust-3"}),
    (
        "status+service+customer",
        {"status": JobStatus.COMPLETED, "service": "svc-b", "customer_id": "cust-3"},
    ),
)


async def fill(queue: JobQueue, count: int) -> float:
    start = time.perf_counter()
    await queue.register_worker("bench", WorkerCapabilities(services=list(SERVICES)))
    for offset in range(0, count, 5_000):
        specs = [
            JobSpec(
                service_required=SERVICES[n % len(SERVICES)],
                customer_id=CUSTOMERS[(n // 4) % len(CUSTOMERS)],
            )
            for n in range(offset, min(count, offset + 5_000))
        ]
        await queue.submit_many(specs)
    to_run = count * 9 // 10
    done = 0
    while done < to_run:
        claimed = await queue.claim("bench", count=min(1_000, to_run - done), lease_s=600)
        if not claimed:
            break
        await queue.complete_many("bench", [(c.job.id, c.attempt, {"ok": True}) for c in claimed])
        done += len(claimed)
    waiting = (await queue.list_jobs(status=JobStatus.PENDING, limit=500)).jobs
    for job in waiting[:: max(1, len(waiting) // CANCELLED)][:CANCELLED]:
        await queue.cancel(job.id)
    return time.perf_counter() - start


async def timed_page(queue: JobQueue, filters: dict[str, Any], cursor: str | None) -> float:
    samples = []
    for _ in range(READS):
        start = time.perf_counter()
        await queue.list_jobs(cursor=cursor, limit=LIMIT, **filters)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def deep_cursor(queue: JobQueue, filters: dict[str, Any]) -> str | None:
    cursor = None
    for _ in range(DEEP_PAGE - 1):
        page = await queue.list_jobs(cursor=cursor, limit=LIMIT, **filters)
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor
    return cursor


async def index_bytes(redis: Redis, queue: JobQueue) -> int:
    total = 0
    async for key in redis.scan_iter(f"{queue.keys.prefix}list:*", count=1_000):
        total += await redis.memory_usage(key, samples=0) or 0
    return total


async def run_size(url: str, count: int) -> dict[str, Any]:
    redis = connect(url)
    queue = JobQueue(redis, namespace=f"bench-listing-{count}", events_maxlen=10_000)
    fill_s = await fill(queue, count)
    results: dict[str, Any] = {"jobs": count, "fill_s": round(fill_s, 1), "filters": {}}
    for name, filters in FILTERS:
        first = await timed_page(queue, filters, None)
        cursor = await deep_cursor(queue, filters)
        deep = await timed_page(queue, filters, cursor) if cursor else None
        found = len((await queue.list_jobs(limit=LIMIT, **filters)).jobs)
        results["filters"][name] = {"first_ms": first, "deep_ms": deep, "page_size": found}
    results["index_bytes_per_job"] = round(await index_bytes(redis, queue) / count)
    await redis.aclose()
    return results


def markdown(runs: list[dict[str, Any]], machine: str) -> str:
    sizes = [f"{run['jobs']:,} jobs" for run in runs]
    lines = [
        f"Run {time.strftime('%Y-%m-%d')}; command: `python -m bench.listing_bench "
        f"--sizes {','.join(str(r['jobs']) for r in runs)} --write-docs`; {machine}. "
        "Measured under load (other sessions shared the 2 cores): rerun quietly. "
        f"{LIMIT} jobs a page, median of {READS} reads through `JobQueue.list_jobs`; "
        f"page {DEEP_PAGE} reached by following the cursors. Jobs over 4 services and 10 "
        "customers, 90 % completed, 10 cancelled, the rest pending.",
        "",
        "| Filter | "
        + " | ".join(f"page 1, {s}" for s in sizes)
        + " | "
        + " | ".join(f"page {DEEP_PAGE}, {s}" for s in sizes)
        + " |",
        "|---|" + "---|" * (2 * len(runs)),
    ]
    for name, _ in FILTERS:
        cells = [f"{run['filters'][name]['first_ms']:.1f} ms" for run in runs]
        for run in runs:
            deep = run["filters"][name]["deep_ms"]
            cells.append("(fewer pages)" if deep is None else f"{deep:.1f} ms")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Listing indexes' memory per job: "
        + ", ".join(f"{run['index_bytes_per_job']} bytes at {run['jobs']:,}" for run in runs)
        + " (each job is in one status x service index, and with a customer in one status x "
        "service x customer index and its customer's index). Filling took "
        + ", ".join(f"{run['fill_s']} s" for run in runs)
        + "."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    runs = []
    for size in sizes:
        with (
            tempfile.TemporaryDirectory() as data_dir,
            EmbeddedValkey(Path(data_dir), persistent=False) as server,
        ):
            print(f"{size:,} jobs ...", flush=True)
            runs.append(asyncio.run(run_size(server.url, size)))
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    text = markdown(runs, machine)
    print(text)
    if args.write_docs:
        write_section("listing", "Listings from indexes (#19 item 6)", text)


if __name__ == "__main__":
    main()
