"""Model demand: waiting jobs per model, and the live workers holding each model."""

from __future__ import annotations

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
    assert {m: d.pending for m, d in demand.items()} == {"cold": 3, "hot": 1, "warm": 1}
    assert (demand["hot"].loaded_on, demand["hot"].installed_on, demand["hot"].unmet) == (1, 1, 0)
    assert (demand["cold"].loaded_on, demand["cold"].installed_on, demand["cold"].unmet) == (
        0,
        0,
        3,
    )
    assert (await model_demand(job_queue))[0].model == "cold"  # most unmet first
