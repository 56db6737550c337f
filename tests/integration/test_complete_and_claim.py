"""complete_and_claim: the results and the next claim in one script run, with the guarantees of
complete and claim called one after the other (decision 0070)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.broker import connect
from emp_queue.models import ClaimedJob

SIM = WorkerCapabilities(services=["sim"])


async def _drain(queue: JobQueue, worker_id: str, fused: bool) -> list[str]:
    """Claim one, then complete it and take the next until none is left; the order taken."""
    order: list[str] = []
    held: list[ClaimedJob] = await queue.claim(worker_id, count=1)
    while held:
        job = held[0]
        order.append(job.job.id)
        result = [(job.job.id, job.attempt, {"n": job.job.payload["n"]})]
        if fused:
            (outcome,), claim = await queue.complete_and_claim(worker_id, result, count=1)
            assert outcome.accepted
            assert claim is not None
            held = claim.jobs
        else:
            (outcome,) = await queue.complete_many(worker_id, result)
            assert outcome.accepted
            held = await queue.claim(worker_id, count=1)
    return order


async def test_the_same_records_counts_and_order_as_complete_then_claim(
    redis_client: Redis, namespace: str
) -> None:
    figures = []
    for fused in (False, True):
        queue = JobQueue(redis_client, namespace=f"{namespace}-{fused}")
        try:
            await queue.register_worker("w", SIM)
            specs = [
                JobSpec(id=f"j{n}", service_required="sim", priority=n % 3, payload={"n": n})
                for n in range(30)
            ]
            await queue.submit_many(specs)
            order = await _drain(queue, "w", fused)
            jobs = await queue.get_many([spec.id for spec in specs if spec.id])
            totals = await queue.totals()
            events = [(event.type, event.job_id) for event in await queue.events.read(count=1000)]
            figures.append(
                (
                    order,
                    [(job.status, job.result, job.attempt, job.worker_id) for job in jobs],
                    await queue.stats(),
                    (totals.claimed, totals.completed, totals.run["sim"].count),
                    [event for event in events if event[0] in ("job_assigned", "complete_job")],
                )
            )
        finally:
            await queue.purge()
    separate, fused_figures = figures
    assert separate == fused_figures
    assert separate[2] == {"sim": {"completed": 30}}
    assert {status for status, *_ in separate[1]} == {JobStatus.COMPLETED}


async def test_a_stale_result_is_refused_and_the_claim_still_runs(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    await job_queue.submit_many([JobSpec(service_required="sim", payload={"n": n}) for n in "ab"])
    (first,) = await job_queue.claim("w", count=1)
    outcomes, claim = await job_queue.complete_and_claim(
        "w", [(first.job.id, first.attempt + 1, "late")], count=1
    )
    assert [(o.accepted, o.reason) for o in outcomes] == [(False, "superseded")]
    assert claim is not None
    assert [c.job.payload["n"] for c in claim.jobs] == ["b"]
    assert (await job_queue.get(first.job.id)).status == JobStatus.ASSIGNED


async def test_an_unregistered_worker_completes_and_claims_nothing(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    await job_queue.submit_many([JobSpec(service_required="sim", payload={"n": n}) for n in "ab"])
    (first,) = await job_queue.claim("w", count=1)
    await job_queue.deregister_worker("w", "test")  # as the sweep does to a silent worker
    # (no live worker is left for the second job: it becomes unworkable)
    outcomes, claim = await job_queue.complete_and_claim(
        "w", [(first.job.id, first.attempt, {"ok": 1})], count=1
    )
    assert claim is None
    assert [o.accepted for o in outcomes] == [True]
    assert (await job_queue.get(first.job.id)).status == JobStatus.COMPLETED
    assert (await job_queue.stats())["sim"] == {"completed": 1, "unworkable": 1}


async def test_count_below_one_is_refused(job_queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await job_queue.complete_and_claim("w", [], count=0)


async def test_concurrent_workers_complete_every_job_exactly_once(
    redis_url: str, namespace: str
) -> None:
    clients = [connect(redis_url) for _ in range(20)]
    queues = [JobQueue(client, namespace=namespace) for client in clients]
    try:
        for index, queue in enumerate(queues):
            await queue.register_worker(f"w{index}", SIM)
        submitted = await queues[0].submit_many(
            [JobSpec(service_required="sim", payload={"n": n}) for n in range(400)]
        )
        per_worker = await asyncio.gather(
            *(_drain(queue, f"w{index}", True) for index, queue in enumerate(queues))
        )
        stats = await queues[0].stats()
        totals = await queues[0].totals()
    finally:
        await queues[0].purge()
        for client in clients:
            await client.aclose()
    done = [job_id for ids in per_worker for job_id in ids]
    assert sorted(done) == sorted(job.id for job in submitted)
    assert stats == {"sim": {"completed": 400}}
    assert totals.claimed == {"sim": 400}
    assert totals.completed == {"sim": 400}
    assert sum(1 for ids in per_worker if ids) > 1, "the workers did not actually run together"
