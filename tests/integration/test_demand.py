"""Model demand: waiting jobs per model, and the live workers holding each model."""

from __future__ import annotations

import time

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.demand import model_demand


def needing(model: str) -> JobSpec:
    return JobSpec(service_required="sim", requirements={"models": [model]})


async def test_demand_counts_waiting_jobs_per_model_and_who_holds_it(job_queue: JobQueue) -> None:
    holder = {"loaded": ["hot"], "installed": ["hot", "warm"], "fetchable": ["cold"]}
    await job_queue.register_worker(
        "w", WorkerCapabilities.model_validate({"services": ["sim"], "models": {"sim": holder}})
    )
    await job_queue.submit_many(
        [needing("cold")] * 3 + [needing("hot")] * 2 + [needing("warm")] + [needing("gone")]
    )
    [claimed] = await job_queue.claim("w")  # affinity: the worker takes a "hot" job first
    assert claimed.job.requirements["models"] == ["hot"]

    demand = {d.model: d for d in await model_demand(job_queue)}
    # "gone" (no worker can run it: unworkable) is not waiting for placement; it did arrive.
    assert {m: d.pending for m, d in demand.items()} == {"cold": 3, "hot": 1, "warm": 1, "gone": 0}
    assert demand["gone"].arrivals_per_min_5m == 1 / 5
    assert (demand["hot"].loaded_on, demand["hot"].installed_on, demand["hot"].unmet) == (1, 1, 0)
    assert (demand["cold"].loaded_on, demand["cold"].installed_on, demand["cold"].unmet) == (
        0,
        0,
        3,
    )
    assert (await model_demand(job_queue))[0].model == "cold"  # most unmet first


async def test_demand_has_arrival_rates_sizes_and_expected_costs(job_queue: JobQueue) -> None:
    holder = {"installed": ["big"], "fetchable": ["small"], "sizes": {"big": 6_000_000_000}}
    await job_queue.register_worker(
        "w", WorkerCapabilities.model_validate({"services": ["sim"], "models": {"sim": holder}})
    )
    await job_queue.submit_many([needing("big")] * 10 + [needing("small")] * 3)
    for claimed in await job_queue.claim("w", count=10):  # "big" no longer waits, but arrived
        await job_queue.complete("w", claimed.job.id, claimed.attempt, None)

    demand = {d.model: d for d in await model_demand(job_queue)}
    assert demand["big"].pending == 0
    assert demand["big"].arrivals_per_min_5m == 10 / 5
    assert demand["big"].arrivals_per_min_60m == 10 / 60
    assert demand["big"].size_bytes == 6_000_000_000
    assert demand["big"].expected_load_s == 3.0  # 6 GB at 2 GB/s
    assert demand["big"].expected_download_s == 60.0  # at 100 MB/s
    assert (demand["small"].pending, demand["small"].size_bytes) == (3, None)
    # An hour later nothing arrived in the window: the counts are per minute, kept 62 min.
    later = await model_demand(job_queue, now_ms=round(time.time() * 1000) + 61 * 60_000)
    assert {d.model: d.arrivals_per_min_60m for d in later} == {"small": 0.0}
