"""explain's estimated start: from the position, the matching workers and measured run times."""

from __future__ import annotations

import asyncio

from emp_queue import JobQueue, JobSpec, WorkerCapabilities


async def test_explain_estimates_the_start_from_measured_run_times(job_queue: JobQueue) -> None:
    caps = WorkerCapabilities(services=["sim"])
    for worker in ("w1", "w2"):
        await job_queue.register_worker(worker, caps)
    await job_queue.submit(JobSpec(service_required="sim"))
    [first] = await job_queue.claim("w1")
    await asyncio.sleep(0.2)
    await job_queue.complete("w1", first.job.id, first.attempt, None)
    mean_s = (await job_queue.totals()).run["sim"].sum_s
    assert mean_s >= 0.2

    await job_queue.submit(JobSpec(service_required="sim"))
    [busy] = await job_queue.claim("w2")  # w2 is busy now, w1 idle
    jobs = await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(4)])

    now = await job_queue.explain(jobs[0].id)
    assert now.position == 0
    assert now.estimated_start is not None
    assert now.estimated_start.in_s == 0.0

    last = await job_queue.explain(jobs[3].id)
    assert last.position == 3
    assert last.estimated_start is not None
    # 3 ahead: the idle worker takes one, 2 left for 2 workers: one round after the first.
    assert last.estimated_start.in_s == mean_s / 2 + mean_s
    assert "over 1 completed jobs" in last.estimated_start.basis
    await job_queue.complete("w2", busy.job.id, busy.attempt, None)
    assert (await job_queue.explain(busy.job.id)).estimated_start is None


def gpu(**models: object) -> WorkerCapabilities:
    return WorkerCapabilities.model_validate({"services": ["sim"], "models": {"sim": models}})


async def test_explain_shows_the_expected_load_or_download(job_queue: JobQueue) -> None:
    sizes = {"big": 6_000_000_000, "hot": 2_000_000_000}
    await job_queue.register_worker("far", gpu(fetchable=["big"], sizes=sizes))
    await job_queue.register_worker("near", gpu(installed=["big"], sizes=sizes))
    await job_queue.register_worker("hot", gpu(loaded=["hot"], installed=["hot"], sizes=sizes))
    big, hot = await job_queue.submit_many(
        [JobSpec(service_required="sim", requirements={"models": [m]}) for m in ("big", "hot")]
    )
    cost = (await job_queue.explain(big.id)).model_cost
    assert cost is not None
    assert (cost.tier, cost.load_s, cost.download_s) == (1, 3.0, 0.0)  # "near" has it on disk
    assert "big installed" in cost.basis
    hot_cost = (await job_queue.explain(hot.id)).model_cost
    assert hot_cost is not None
    assert (hot_cost.tier, hot_cost.load_s) == (0, 0.0)

    await job_queue.deregister_worker("near")
    cost = (await job_queue.explain(big.id)).model_cost
    assert cost is not None
    assert (cost.tier, cost.load_s, cost.download_s) == (2, 3.0, 60.0)
    assert "to download, then load" in cost.basis
