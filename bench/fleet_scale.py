"""Fleet scale, as the claim path is today: what many workers cost Redis, and the wake-up herd.

    python -m bench.fleet_scale [--workers 100 1000] [--seconds 20] [--write-docs]

Simulated workers, many in this process, each with its own connection and its own
subscription to the namespace's ``work`` channel, as an ``emp worker`` has; they call the real
scripts through ``JobQueue`` (register, heartbeat every 5 s, sweep every 15 s, claim,
complete — the worker's defaults). A private Valkey (the embedded binary) serves the run, so
its counters see only this benchmark. For each fleet size N:

* **idle** — N idle workers of one service for ``--seconds``: Redis CPU (share of one core,
  from ``INFO cpu``) and commands/s (``INFO stats``).
* **herd** — N idle workers of *another* service claim on every ``work`` notice (as
  ``emp worker`` does), while one worker of the service ``sim`` runs what a producer submits
  at 100 jobs/s: submit → completion p50/p99, the useless claims (those that return no job)
  per submitted job and per second, and Redis CPU meanwhile. All in this one process: past a
  few thousand claims/s the process, not Redis, is what the notices queue behind, so the
  latency then measures Python; the useless claims per job and Redis CPU per claim do not
  depend on it.
* **busy** — N workers of ``sim`` drain 20 x N zero-length jobs: jobs/s, claim p50/p99.

This measures the claim path as it is (issue 18 items 2 and 3 are for the owner of
``claim.lua``); it changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from bench.harness import percentile
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, WorkerCapabilities

RESULTS = Path(__file__).parent / "results" / "fleet_scale.json"
HEARTBEAT_S = 5.0
SWEEP_S = 15.0
HERD_RATE = 100.0


@dataclass
class FleetFigures:
    workers: int
    idle_redis_cpu_pct: float
    idle_commands_per_s: float
    herd_submit_to_complete_p50_ms: float
    herd_submit_to_complete_p99_ms: float
    herd_useless_claims_per_job: float
    herd_useless_claims_per_s: float
    herd_redis_cpu_pct: float
    busy_jobs_per_s: float
    busy_claim_p50_ms: float
    busy_claim_p99_ms: float


async def _redis_counters(redis: Redis) -> tuple[float, int]:
    cpu = await redis.info("cpu")
    stats = await redis.info("stats")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), int(
        stats["total_commands_processed"]
    )


class SimWorker:
    """One simulated worker: its own subscription, the real scripts, the worker's timers."""

    def __init__(self, queue: JobQueue, worker_id: str, service: str) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.service = service
        self.claims = 0
        self.useless = 0
        self.claim_ms: list[float] = []
        self.completed: dict[str, float] = {}
        self.pubsub: PubSub | None = None

    async def start(self) -> None:
        await self.queue.register_worker(
            self.worker_id, WorkerCapabilities(services=[self.service])
        )
        self.pubsub = self.queue.redis.pubsub()
        await self.pubsub.subscribe(
            self.queue.keys.work_channel, self.queue.keys.worker_control(self.worker_id)
        )

    async def housekeeping(self) -> None:
        # Staggered like a fleet started over time.
        await asyncio.sleep(random.uniform(0, HEARTBEAT_S))
        next_sweep = time.monotonic() + random.uniform(0, SWEEP_S)
        while True:
            await self.queue.heartbeat(self.worker_id, [], "idle")
            if time.monotonic() >= next_sweep:
                await self.queue.sweep()
                next_sweep += SWEEP_S
            await asyncio.sleep(HEARTBEAT_S)

    async def claim_on_notices(self) -> None:
        assert self.pubsub is not None
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                await self.claim_and_complete()

    async def claim_and_complete(self) -> int:
        began = time.perf_counter()
        claimed = await self.queue.claim(self.worker_id, count=1)
        self.claim_ms.append((time.perf_counter() - began) * 1000)
        self.claims += 1
        if not claimed:
            self.useless += 1
        for job in claimed:
            await self.queue.complete(self.worker_id, job.job.id, job.attempt, {"ok": True})
            self.completed[job.job.id] = time.perf_counter()
        return len(claimed)

    async def close(self) -> None:
        if self.pubsub is not None:
            await self.pubsub.aclose()


async def _fleet(queue: JobQueue, count: int, service: str, prefix: str) -> list[SimWorker]:
    workers = [SimWorker(queue, f"{prefix}-{index}", service) for index in range(count)]
    for start in range(0, count, 100):
        await asyncio.gather(*(w.start() for w in workers[start : start + 100]))
    return workers


async def measure_idle(url: str, count: int, seconds: float) -> tuple[float, float]:
    redis = connect(f"{url}?max_connections={2 * count + 20}")
    queue = JobQueue(redis, namespace=f"idle-{count}")
    workers = await _fleet(queue, count, "sim", "idle")
    tasks = [asyncio.create_task(w.housekeeping()) for w in workers]
    try:
        await asyncio.sleep(HEARTBEAT_S)  # every worker has beaten once
        cpu0, commands0 = await _redis_counters(redis)
        await asyncio.sleep(seconds)
        cpu1, commands1 = await _redis_counters(redis)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            await worker.close()
        await queue.purge()
        await redis.aclose()
    return 100 * (cpu1 - cpu0) / seconds, (commands1 - commands0) / seconds


async def measure_herd(
    url: str, count: int, seconds: float
) -> tuple[float, float, float, float, float]:
    redis = connect(f"{url}?max_connections={2 * count + 40}")
    queue = JobQueue(redis, namespace=f"herd-{count}")
    others = await _fleet(queue, count, "other", "other")
    [real] = await _fleet(queue, 1, "sim", "real")
    tasks = [asyncio.create_task(w.claim_on_notices()) for w in [*others, real]]
    submitted: dict[str, float] = {}
    try:
        cpu0, _ = await _redis_counters(redis)
        began = time.perf_counter()
        total = int(HERD_RATE * seconds)
        for index in range(total):
            await asyncio.sleep(max(0.0, began + index / HERD_RATE - time.perf_counter()))
            job_id = f"herd-{index}"
            submitted[job_id] = time.perf_counter()
            await queue.submit(JobSpec(id=job_id, service_required="sim", payload={}))
        elapsed = time.perf_counter() - began
        cpu1, _ = await _redis_counters(redis)
        deadline = time.monotonic() + 60
        while len(real.completed) < total and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in [*others, real]:
            await worker.close()
        await queue.purge()
        await redis.aclose()
    done = real.completed
    latencies = [(done[job] - at) * 1000 for job, at in submitted.items() if job in done]
    useless = sum(w.useless for w in others)
    return (
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        useless / len(submitted),
        useless / elapsed,
        100 * (cpu1 - cpu0) / elapsed,
    )


async def measure_busy(url: str, count: int) -> tuple[float, float, float]:
    redis = connect(f"{url}?max_connections={2 * count + 20}")
    queue = JobQueue(redis, namespace=f"busy-{count}")
    workers = await _fleet(queue, count, "sim", "busy")
    jobs = 20 * count
    for start in range(0, jobs, 2000):
        await queue.submit_many(
            [JobSpec(service_required="sim", payload={}) for _ in range(min(2000, jobs - start))]
        )

    async def drain(worker: SimWorker) -> None:
        while await worker.claim_and_complete():
            pass

    try:
        began = time.perf_counter()
        await asyncio.gather(*(drain(w) for w in workers))
        elapsed = time.perf_counter() - began
    finally:
        for worker in workers:
            await worker.close()
        await queue.purge()
        await redis.aclose()
    claims = [ms for w in workers for ms in w.claim_ms]
    return jobs / elapsed, percentile(claims, 0.5), percentile(claims, 0.99)


async def measure(url: str, count: int, seconds: float) -> FleetFigures:
    idle_cpu, idle_commands = await measure_idle(url, count, seconds)
    herd = await measure_herd(url, count, min(seconds, 10.0))
    busy = await measure_busy(url, count)
    return FleetFigures(count, idle_cpu, idle_commands, *herd, *busy)


def table(figures: list[FleetFigures]) -> str:
    lines = [
        "| workers | idle: Redis CPU | idle: commands/s | herd: submit → complete p50 / p99 "
        "| herd: useless claims per job | herd: useless claims/s | herd: Redis CPU "
        "| busy: jobs/s | busy: claim p50 / p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.workers:,} | {f.idle_redis_cpu_pct:.1f} % of a core | "
            f"{f.idle_commands_per_s:,.0f} | {f.herd_submit_to_complete_p50_ms:.1f} / "
            f"{f.herd_submit_to_complete_p99_ms:.1f} ms | {f.herd_useless_claims_per_job:,.0f} | "
            f"{f.herd_useless_claims_per_s:,.0f} | {f.herd_redis_cpu_pct:.0f} % of a core | "
            f"{f.busy_jobs_per_s:,.0f} | "
            f"{f.busy_claim_p50_ms:.2f} / {f.busy_claim_p99_ms:.2f} ms |"
        )
    return "\n".join(lines)


async def run(counts: list[int], seconds: float) -> list[FleetFigures]:
    with (
        tempfile.TemporaryDirectory(prefix="emp-fleet-") as directory,
        EmbeddedValkey(Path(directory), persistent=False) as server,
    ):
        admin = connect(server.url)
        await admin.config_set("maxclients", 15000)
        await admin.aclose()
        results = []
        for count in counts:
            figures = await measure(server.url, count, seconds)
            print(json.dumps(asdict(figures)), flush=True)
            results.append(figures)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args.workers, args.seconds))
    print(table(figures))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(f) for f in figures], indent=2))
    if args.write_docs:
        from bench.docs_section import write_section

        sizes = " ".join(map(str, args.workers))
        text = (
            f"`python -m bench.fleet_scale --workers {sizes} --seconds {args.seconds:g}` "
            f"({platform.machine()}, {os.cpu_count()} cores shared with other work; the "
            f"simulated workers share one Python process with the producer)\n\n{table(figures)}"
        )
        write_section("fleet-scale-bench", "Fleet scale, as the claim path is (issue 18)", text)


if __name__ == "__main__":
    main()
