"""The worked example of docs/matching.md ("The whole order"), run through the real claim."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities


def gpu(pool: str, **models: list[str]) -> WorkerCapabilities:
    return WorkerCapabilities.model_validate(
        {"services": ["sim"], "models": {"sim": models}, "pool": pool}
    )


async def test_the_worked_example_of_the_whole_order(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(
        redis_client,
        namespace=namespace,
        fair_share_window_s=600,
        affinity_window_s=60,
        affinity_hold_s=30,  # J2 stays held however slow this machine is
    )
    # acme: two running jobs it claimed just now; globex: nothing running.
    await queue.register_worker("other", WorkerCapabilities(services=["other"]))
    await queue.submit_many([JobSpec(service_required="other", customer_id="acme")] * 2)
    assert len(await queue.claim("other", count=2)) == 2
    await queue.register_worker("W2", gpu("standard", loaded=["flux"], installed=["flux"]))
    assert await queue.claim("W2") == []  # free, flux loaded
    w1 = gpu("standard", loaded=["sdxl"], installed=["sdxl", "flux"], fetchable=["wan"])
    await queue.register_worker("W1", w1)

    seconds, micros = await redis_client.time()
    now_ms = seconds * 1000 + micros // 1000

    def job(name: str, customer: str, priority: int, at_s: float, pool: str, model: str) -> Any:
        return JobSpec(
            id=f"{name}-{namespace}",
            service_required="sim",
            customer_id=customer,
            priority=priority,
            workflow_datetime=now_ms - round((100 - at_s) * 1000),  # "now" is t = 100 s
            requirements={"pool": pool, "models": [model]},
        )

    await queue.submit_many(
        [
            job("J1", "acme", 50, 10, "standard", "flux"),
            job("J2", "globex", 50, 99, "standard", "flux"),
            job("J3", "globex", 50, 45, "standard", "sdxl"),
            job("J4", "globex", 50, 99.5, "fast", "sdxl"),
            job("J5", "acme", 70, 90, "standard", "wan"),
            job("J6", "globex", 50, 30, "standard", "flux"),
        ]
    )
    claimed = await queue.claim("W1", count=6)

    assert [c.job.id.split("-")[0] for c in claimed] == ["J5", "J3", "J6", "J1"]
    # J2 is held for W2 (free, flux loaded) and J4 waits for a fast worker: both still wait.
    assert [c.job.id.split("-")[0] for c in await queue.claim("W2", count=6)] == ["J2"]
