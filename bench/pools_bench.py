"""Pools with fallback (issue 15 item 3): how soon a job of a missing pool starts elsewhere,
and what pools do for fast jobs while heavy ones flood the queue.

    python -m bench.pools_bench [--quick] [--write-docs]

Runs real worker runtimes (``emp_queue.worker.Worker``, in this process) against a private
Valkey it starts and stops itself:

- fallback start: a fleet of heavy workers only, fast jobs submitted one by one: the wait of
  each from submit to start, against its fallback delay (fast -> standard -> heavy, so a
  heavy worker may take a fast job after 2 x the fast delay), target delay + 1 s. Nothing
  announces the end of a delay: the claim tells the idle worker when to look again;
- flood: a mixed fleet (2 fast workers, 6 heavy), 120 heavy jobs (0.5 s each) submitted at
  once, then fast jobs (20 ms) arriving 20 a second for 3 s. The pools are automatic (the
  classes' run times were measured by a warm-up run; thresholds scaled to the bench's job
  lengths: fast up to 100 ms, standard up to 300 ms). The p95 wait of the fast jobs with pools
  on, against the same run with pools off (EMP_POOLS_ENABLED=false: every worker takes any
  job, in submit order).

Results go to ``bench/results/pools.json``; ``--write-docs`` rewrites the section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.harness import BenchReport, percentile, run_bench
from emp_queue.core.broker import connect
from emp_queue.core.pools import PoolRules
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, WorkerCapabilities
from emp_queue.worker import JobContext, Worker, WorkerSettings

RESULTS = Path(__file__).parent / "results" / "pools.json"
SETTINGS = WorkerSettings(heartbeat_interval_s=2, idle_poll_s=30, drain_grace_s=1)
HEAVY_S, FAST_S = 0.5, 0.02


@dataclass(frozen=True)
class Sizes:
    fast_delay_s: float = 10.0
    fallback_jobs: int = 3
    heavy_jobs: int = 120
    fast_per_s: int = 20
    fast_for_s: float = 3.0


QUICK = Sizes(1.0, 2, 60, 20, 1.5)


class Fleet:
    """Worker runtimes of given pools; ``started[job_id]`` is when each job began (monotonic)."""

    def __init__(self, queue: JobQueue, pools: list[str | None]) -> None:
        self.started: dict[str, float] = {}
        self.began = asyncio.Event()
        self.workers = [
            Worker(queue, f"{pool or 'any'}-{n}", caps(pool), self.handler, SETTINGS)
            for n, pool in enumerate(pools)
        ]
        self.tasks: list[asyncio.Task[None]] = []

    async def handler(self, context: JobContext) -> None:
        self.started[context.job.id] = time.monotonic()
        self.began.set()
        await asyncio.sleep(context.job.payload["run_s"])

    async def __aenter__(self) -> Fleet:
        self.tasks = [asyncio.create_task(w.run()) for w in self.workers]
        for worker in self.workers:
            await asyncio.wait_for(worker.registered.wait(), 10)
        return self

    async def __aexit__(self, *_: object) -> None:
        for worker in self.workers:
            worker.stop()
        await asyncio.gather(*self.tasks)

    async def until_started(self, job_ids: list[str], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while any(job_id not in self.started for job_id in job_ids):
                self.began.clear()
                await self.began.wait()


def caps(pool: str | None) -> WorkerCapabilities:
    return WorkerCapabilities(services=["sim"], pool=pool, labels={"kind": ["heavy", "fast"]})


def job(kind: str, run_s: float) -> JobSpec:
    # The label makes the two kinds two classes, so each gets its own measured pool.
    return JobSpec(
        service_required="sim",
        payload={"run_s": run_s},
        requirements={"positive_requirements": {"kind": kind}} if kind else {},
    )


async def fresh(redis: Redis, name: str, rules: PoolRules) -> JobQueue:
    queue = JobQueue(redis, namespace=name, pools=rules)
    await queue.purge()
    return queue


async def fallback_start(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    rules = PoolRules(delay_ms={"fast": round(sizes.fast_delay_s * 1000)})
    queue = await fresh(redis, "bench-pools-fallback", rules)
    waits = []
    async with Fleet(queue, ["heavy", "heavy", "heavy", "heavy"]) as fleet:
        for _ in range(sizes.fallback_jobs):
            submitted = time.monotonic()
            waiting = await queue.submit(
                JobSpec(service_required="sim", payload={"run_s": 0}, requirements={"pool": "fast"})
            )
            await fleet.until_started([waiting.id], 2 * rules.delay_of("fast") / 1000 + 30)
            waits.append(fleet.started[waiting.id] - submitted)
    await queue.purge()
    delay_s = 2 * sizes.fast_delay_s  # heavy is the 2nd pool of fast's order
    return {"fast_delay_s": sizes.fast_delay_s, "heavy_after_s": delay_s, "waits_s": waits}


async def warm_up(queue: JobQueue) -> None:
    """One run of each kind on a pool-less worker: the classes' run times are measured."""
    async with Fleet(queue, [None]) as fleet:
        jobs = await queue.submit_many([job("heavy", HEAVY_S), job("fast", FAST_S)])
        await fleet.until_started([j.id for j in jobs], 30)
        await asyncio.sleep(HEAVY_S + 0.5)


async def flood(redis: Redis, sizes: Sizes, pools_on: bool) -> dict[str, Any]:
    rules = PoolRules(enabled=pools_on, fast_max_ms=100, standard_max_ms=300)
    queue = await fresh(redis, f"bench-pools-flood-{'on' if pools_on else 'off'}", rules)
    await warm_up(queue)
    fast_ids: dict[str, float] = {}
    pools: list[str | None] = ["fast", "fast", *["heavy"] * 6]
    async with Fleet(queue, pools) as fleet:
        heavy = await queue.submit_many([job("heavy", HEAVY_S) for _ in range(sizes.heavy_jobs)])
        count = round(sizes.fast_per_s * sizes.fast_for_s)
        for _ in range(count):
            submitted = time.monotonic()
            fast_ids[(await queue.submit(job("fast", FAST_S))).id] = submitted
            await asyncio.sleep(1 / sizes.fast_per_s)
        backlog_s = sizes.heavy_jobs * HEAVY_S / 6 + 60
        await fleet.until_started([*fast_ids, *(j.id for j in heavy)], backlog_s)
        waits = [fleet.started[i] - at for i, at in fast_ids.items()]
    await queue.purge()
    return {
        "fast_jobs": len(waits),
        "p50_s": percentile(waits, 0.5),
        "p95_s": percentile(waits, 0.95),
        "max_s": max(waits),
    }


async def run_async(url: str, sizes: Sizes) -> dict[str, Any]:
    redis = connect(url)
    try:
        results: dict[str, Any] = {"sizes": sizes.__dict__}
        print("fallback start ...", flush=True)
        results["fallback"] = await fallback_start(redis, sizes)
        print(f"  {json.dumps(results['fallback'])}", flush=True)
        for pools_on in (True, False):
            name = f"flood_pools_{'on' if pools_on else 'off'}"
            print(f"{name} ...", flush=True)
            results[name] = await flood(redis, sizes, pools_on)
            print(f"  {json.dumps(results[name])}", flush=True)
        return results
    finally:
        await redis.aclose()


def markdown(r: dict[str, Any]) -> str:
    fb, on, off, s = r["fallback"], r["flood_pools_on"], r["flood_pools_off"], r["sizes"]
    worst = max(fb["waits_s"])
    return "\n".join(
        [
            f"Run {r['date']} on {r['machine']}; command: `{r['command']}`.",
            "",
            "| Measure | Target | Result |",
            "|---|---|---|",
            f"| Fast job, fleet of 4 heavy workers only, fast delay {fb['fast_delay_s']:g} s "
            f"(heavy may take it after {fb['heavy_after_s']:g} s): submit to start, worst of "
            f"{len(fb['waits_s'])} | ≤ {fb['heavy_after_s'] + 1:g} s | **{worst:.2f} s** |",
            f"| Fast jobs' wait while {s['heavy_jobs']} heavy jobs flood 8 workers "
            f"(2 fast, 6 heavy), p95, pools on | reported | **{on['p95_s']:.3f} s** "
            f"(p50 {on['p50_s']:.3f} s, max {on['max_s']:.3f} s, {on['fast_jobs']} jobs) |",
            f"| … same run, pools off | reported | **{off['p95_s']:.3f} s** "
            f"(p50 {off['p50_s']:.3f} s, max {off['max_s']:.3f} s) |",
        ]
    )


def measure(url: str, quick: bool) -> dict[str, Any]:
    return asyncio.run(run_async(url, QUICK if quick else Sizes()))


def main() -> None:
    report = BenchReport(
        "bench.pools_bench", RESULTS, "pools-bench", "Pools with fallback (issue 15)"
    )
    run_bench(report, __doc__, measure, markdown)


if __name__ == "__main__":
    main()
