"""GET /api/pools: workers and waiting jobs per pool, with the fallback order."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.matching import JobClass


async def test_workers_and_waiting_jobs_are_grouped_by_pool(
    admin: httpx.AsyncClient, job_queue: JobQueue, redis_client: Redis
) -> None:
    for worker_id, pool in (("h1", "heavy"), ("h2", "heavy"), ("any", None)):
        caps = WorkerCapabilities(services=["sim"], pool=pool, hardware={"ram_gb": 8})
        await job_queue.register_worker(worker_id, caps)
    await job_queue.submit_many(
        [JobSpec(service_required="sim", requirements={"pool": "fast"}) for _ in range(3)]
    )
    big = {"hardware": {"ram_gb": 1}}
    # Its class ran 10 minutes per job: a heavy class (no pool requirement).
    class_id = JobClass("sim", None, big).class_id
    await redis_client.hset(job_queue.keys.job_class(class_id), "run_ms", 600_000)
    await job_queue.submit_many([JobSpec(service_required="sim", requirements=big)] * 2)
    await job_queue.submit(JobSpec(service_required="sim"))  # no pool yet: not measured

    body = (await admin.get("/api/pools")).json()
    pools = {p["pool"]: p for p in body["pools"]}
    assert pools["heavy"]["workers"] == 2
    assert pools["heavy"]["idle_workers"] == 2
    assert pools["heavy"]["waiting"] == 2
    assert pools["fast"]["workers"] == 0
    assert pools["fast"]["waiting_by_service"] == {"sim": 3}
    assert [(s["pool"], s["after_s"]) for s in pools["fast"]["falls_back_to"]] == [
        ("standard", 10.0),
        ("heavy", 20.0),
    ]
    assert (pools[""]["workers"], pools[""]["waiting"]) == (1, 1)
    assert [p["pool"] for p in body["pools"]][-1] == ""  # "no pool" comes last
