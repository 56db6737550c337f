"""Fair share and caps (issue 15): who gets the next job, and what it costs the claim.

    python -m bench.fair_share_bench [--quick] [--write-docs]

Runs against a private Valkey (the embedded binary, no persistence) that it starts and stops
itself. Measures, each with the real scripts:

- late customer: A submits 1,000 jobs, one worker drains; after 10 claims B submits 10 at the
  same priority. Where B's first job comes (claims after its submit) and how many of A's
  jobs ran before B's last one;
- weights 3 : 1, both backlogged: the split over 2,000 claims;
- four customers of equal weight: Jain's fairness index of their claims over 2,000 claims;
- running cap 5 with 50 workers claiming concurrently: the most of that customer's jobs ever
  running at once, replayed from the event stream (every assignment and completion), and the
  share of the other customers' jobs run meanwhile;
- claim latency at 100,000 pending jobs over 1,000 classes of 100 customers (all with a
  policy: weights 1-4, caps above what one worker reaches) with pools on (workers of pool
  standard, classes measured fast / standard / heavy in turn, fast and heavy ones deferred),
  for a worker matching every class (its claims alternating with those of the same worker
  without a pool: the difference is what pools cost), for one matching 1 %, and for one of a
  pool no class falls back to (each of its claims reads every class and takes none);
- one-worker drain (the core benchmark's throughput driver, 20,000 jobs).

Results go to ``bench/results/fair_share.json``; ``--write-docs`` rewrites the section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.competitors import OURS, reset_server, run_competitor
from bench.harness import BenchReport, percentile, run_bench
from emp_queue.core.broker import connect
from emp_queue.core.customers import CustomerPolicy
from emp_queue.core.matching import JobClass
from emp_queue.core.pools import DEFAULT_FALLBACK, PoolRules
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, WorkerCapabilities

RESULTS = Path(__file__).parent / "results" / "fair_share.json"
SIM = WorkerCapabilities(services=["sim"])


@dataclass(frozen=True)
class Sizes:
    backlog: int = 1_000
    split_claims: int = 2_000
    pending: int = 100_000
    classes: int = 1_000
    customers: int = 100
    claims: int = 2_000
    drain_jobs: int = 20_000


QUICK = Sizes(1_000, 1_000, 20_000, 1_000, 100, 300, 5_000)


def jobs_of(customer: str, n: int) -> list[JobSpec]:
    return [JobSpec(service_required="sim", customer_id=customer) for _ in range(n)]


async def fresh(redis: Redis, name: str) -> JobQueue:
    queue = JobQueue(redis, namespace=name, events_maxlen=200_000)
    await queue.purge()
    return queue


async def claim_complete(queue: JobQueue, worker: str = "w") -> str | None:
    claimed = await queue.claim(worker)
    if not claimed:
        return None
    await queue.complete(worker, claimed[0].job.id, claimed[0].attempt, None)
    return claimed[0].job.customer_id


async def late_customer(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    queue = await fresh(redis, "bench-fair-late")
    await queue.register_worker("w", SIM)
    await queue.submit_many(jobs_of("A", sizes.backlog))
    for _ in range(10):
        await claim_complete(queue)
    await queue.submit_many(jobs_of("B", 10))
    order = []
    while order.count("B") < 10:
        order.append(await claim_complete(queue))
    await queue.purge()
    return {
        "a_backlog": sizes.backlog,
        "b_first_claim": order.index("B") + 1,
        "a_before_last_b": order.count("A"),
    }


async def split(redis: Redis, weights: dict[str, float], claims: int) -> dict[str, int]:
    queue = await fresh(redis, "bench-fair-split")
    for customer, weight in weights.items():
        await queue.set_customer_policy(customer, CustomerPolicy(weight=weight))
    await queue.register_worker("w", SIM)
    specs = [s for customer in weights for s in jobs_of(customer, claims)]
    for start in range(0, len(specs), 2_000):
        await queue.submit_many(specs[start : start + 2_000])
    counts = dict.fromkeys(weights, 0)
    for _ in range(claims):
        customer = await claim_complete(queue)
        assert customer is not None
        counts[customer] += 1
    await queue.purge()
    return counts


def jain(values: list[int]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


async def weights(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    three_one = await split(redis, {"A": 3.0, "B": 1.0}, sizes.split_claims)
    equal = await split(redis, {c: 1.0 for c in "ABCD"}, sizes.split_claims)
    return {
        "claims": sizes.split_claims,
        "three_to_one": three_one,
        "a_share": three_one["A"] / sizes.split_claims,
        "equal_four": equal,
        "jain": jain(list(equal.values())),
    }


async def running_cap(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    queue = await fresh(redis, "bench-fair-cap")
    await queue.set_customer_policy("A", CustomerPolicy(max_running=5))
    workers = [f"w{n}" for n in range(50)]
    for worker in workers:
        await queue.register_worker(worker, SIM)
    submitted = await queue.submit_many(jobs_of("A", 300) + jobs_of("B", 300) + jobs_of("C", 300))
    owner = {job.id: job.customer_id for job in submitted}
    rng = random.Random(15)

    async def work(worker: str) -> None:
        while claimed := await queue.claim(worker):
            await asyncio.sleep(rng.uniform(0.001, 0.01))
            await queue.complete(worker, claimed[0].job.id, claimed[0].attempt, None)

    await asyncio.gather(*(work(worker) for worker in workers))
    running = {"A": 0, "B": 0, "C": 0}
    most = 0
    others_while_a_capped = 0
    events: Any = await redis.xrange(queue.keys.events)
    for _, fields in events:
        kind = fields[b"type"].decode()
        job_id = fields[b"job_id"].decode()
        if job_id not in owner:
            continue
        customer = owner[job_id] or ""
        if kind == "job_assigned":
            running[customer] += 1
            if customer != "A" and running["A"] == 5:
                others_while_a_capped += 1
        elif kind == "complete_job":
            running[customer] -= 1
        most = max(most, running["A"])
    await queue.purge()
    return {
        "workers": len(workers),
        "cap": 5,
        "events": len(events),
        "most_running": most,
        "others_started_while_capped": others_while_a_capped,
    }


# Pools on for the latency guard: the workers are of pool standard; the classes measured fast,
# standard and heavy in turn, and delays long enough that fast and heavy classes stay deferred
# for the whole run (so every claim skips two classes in three).
# "outside" is in the pool scheme (a fallback target of a pool no job has), so it is bound by the
# measured pools and none of them ever falls back to it: the claim's worst case.
GUARD_POOLS = PoolRules(
    fallback={**DEFAULT_FALLBACK, "unused": ("outside",)},
    delay_ms={"fast": 3_600_000, "heavy": 3_600_000},
)
MEASURED_MS = (1_000, 60_000, 600_000)  # fast, standard, heavy


async def claim_latency(redis: Redis, sizes: Sizes) -> dict[str, Any]:
    queue = JobQueue(redis, namespace="bench-fair-latency", pools=GUARD_POOLS)
    await queue.purge()
    customers = [f"c{n}" for n in range(sizes.customers)]
    for n, customer in enumerate(customers):
        await queue.set_customer_policy(
            customer, CustomerPolicy(weight=1 + n % 4, max_running=1_000, max_pending=10**6)
        )
    slots = {"slot": [f"s{n}" for n in range(sizes.classes)]}
    await queue.register_worker(
        "generalist", WorkerCapabilities(services=["sim"], labels=slots, pool="standard")
    )
    one_percent = {"slot": [f"s{n}" for n in range(0, sizes.classes, 100)]}
    await queue.register_worker(
        "specialist", WorkerCapabilities(services=["sim"], labels=one_percent, pool="standard")
    )
    # A pool of the scheme that no class falls back to: each claim reads them all, takes none.
    await queue.register_worker(
        "outsider", WorkerCapabilities(services=["sim"], labels=slots, pool="outside")
    )
    per_customer = sizes.classes // sizes.customers

    def spec(n: int) -> JobSpec:
        slot = n % sizes.classes
        return JobSpec(
            service_required="sim",
            customer_id=customers[slot // per_customer],
            requirements={"positive_requirements": {"slot": f"s{slot}"}},
        )

    for start in range(0, sizes.pending, 2_000):
        await queue.submit_many([spec(n) for n in range(start, min(sizes.pending, start + 2_000))])
    for slot in range(sizes.classes):
        job = spec(slot)
        class_id = JobClass("sim", job.customer_id, job.requirements).class_id
        await redis.hset(queue.keys.job_class(class_id), "run_ms", MEASURED_MS[slot % 3])
    result: dict[str, Any] = {
        "pending": sizes.pending,
        "classes": sizes.classes,
        "customers": sizes.customers,
    }
    # The generalist's claims alternate with those of the same worker without a pool (no pool
    # rule applies to it), so the two see the same load: their difference is what pools cost.
    await queue.register_worker("no-pool", WorkerCapabilities(services=["sim"], labels=slots))
    for workers in (("generalist", "no-pool"), ("specialist",)):
        by_worker: dict[str, list[float]] = {worker: [] for worker in workers}
        for _ in range(sizes.claims):
            for worker in workers:
                start = time.perf_counter()
                [claimed] = await queue.claim(worker)
                by_worker[worker].append((time.perf_counter() - start) * 1000)
                await queue.release(worker, claimed.job.id, claimed.attempt, "benchmark")
        for worker, samples in by_worker.items():
            result[worker] = {
                "p50_ms": statistics.median(samples),
                "p99_ms": percentile(samples, 0.99),
            }
    samples = []
    for _ in range(max(50, sizes.claims // 10)):
        start = time.perf_counter()
        assert await queue.claim("outsider") == []
        samples.append((time.perf_counter() - start) * 1000)
    result["outsider"] = {"p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 0.99)}
    await queue.purge()
    return result


def drain(url: str, sizes: Sizes) -> dict[str, Any]:
    reset_server(url, owned=True)
    result = run_competitor(OURS, url, jobs=sizes.drain_jobs)
    reset_server(url, owned=True)
    return {"jobs": result.jobs, "jobs_per_s": result.jobs_per_s, "status": result.status}


async def run_async(url: str, sizes: Sizes) -> dict[str, Any]:
    redis = connect(url)
    try:
        results: dict[str, Any] = {}
        for name, step in (
            ("late_customer", late_customer),
            ("weights", weights),
            ("running_cap", running_cap),
            ("claim_latency", claim_latency),
        ):
            print(f"{name} ...", flush=True)
            results[name] = await step(redis, sizes)
            print(f"  {json.dumps(results[name])}", flush=True)
        return results
    finally:
        await redis.aclose()


def markdown(r: dict[str, Any]) -> str:
    late, w, cap, lat, dr = (
        r[k] for k in ("late_customer", "weights", "running_cap", "claim_latency", "drain")
    )
    equal = ", ".join(f"{c} {n}" for c, n in w["equal_four"].items())
    return "\n".join(
        [
            f"Run {r['date']} on {r['machine']}; command: `{r['command']}`.",
            "",
            "| Measure | Target | Result |",
            "|---|---|---|",
            f"| B's first job after B submits 10 behind A's {late['a_backlog']:,} (one worker) "
            f"| within 2 claims | **claim {late['b_first_claim']}** |",
            f"| A's jobs run before B's 10th | < 100 | **{late['a_before_last_b']}** |",
            f"| Weights 3 : 1, {w['claims']:,} claims | 75 / 25 ± 5 % "
            f"| **{100 * w['a_share']:.1f} / {100 - 100 * w['a_share']:.1f} %** |",
            f"| Jain's index, 4 equal customers, {w['claims']:,} claims | ≥ 0.99 "
            f"| **{w['jain']:.4f}** ({equal}) |",
            f"| Most jobs of a customer capped at {cap['cap']} running, {cap['workers']} workers "
            f"(replayed over {cap['events']:,} events) | ≤ {cap['cap']} "
            f"| **{cap['most_running']}**; {cap['others_started_while_capped']} other "
            "customers' jobs started while it was at its cap |",
            f"| Claim p99, {lat['pending']:,} pending, {lat['classes']:,} classes, "
            f"{lat['customers']} customers with policies (fair share, caps), pools on (worker "
            "of pool standard; classes measured fast, standard, heavy in turn, 2 in 3 deferred), "
            "worker matching all | ≤ 2 ms "
            f"| **{lat['generalist']['p99_ms']:.2f} ms** "
            f"(p50 {lat['generalist']['p50_ms']:.2f} ms) |",
            f"| … the same worker without a pool (its claims alternate with the one above) "
            f"| ≤ 2 ms | **{lat['no-pool']['p99_ms']:.2f} ms** "
            f"(p50 {lat['no-pool']['p50_ms']:.2f} ms) |",
            f"| … worker matching 1 % of the classes | ≤ 2 ms "
            f"| **{lat['specialist']['p99_ms']:.2f} ms** "
            f"(p50 {lat['specialist']['p50_ms']:.2f} ms) |",
            f"| … worker of a pool no class falls back to (every claim reads all "
            f"{lat['classes']:,} classes and takes none) | reported "
            f"| **{lat['outsider']['p99_ms']:.2f} ms** (p50 {lat['outsider']['p50_ms']:.2f} ms) |",
            f"| One-worker drain, {dr['jobs']:,} jobs (core bench driver) | ≥ 10,000 jobs/s "
            f"| **{dr['jobs_per_s']:,.0f} jobs/s** ({dr['status']}) |",
        ]
    )


def measure(url: str, quick: bool) -> dict[str, Any]:
    sizes = QUICK if quick else Sizes()
    results = asyncio.run(run_async(url, sizes))
    print("drain ...", flush=True)
    results["drain"] = drain(url, sizes)
    print(f"  {json.dumps(results['drain'])}", flush=True)
    return results


def main() -> None:
    heading = "Fair share and customer caps (issue 15)"
    report = BenchReport("bench.fair_share_bench", RESULTS, "fair-share-bench", heading)
    run_bench(report, __doc__, measure, markdown)


if __name__ == "__main__":
    main()
