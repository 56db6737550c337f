"""Workers and waiting jobs per pool (``GET /api/pools``, the monitor's Pools table).

A waiting job's pool is its class's (``pools.class_pool``: requirement or measured run time),
so the count is per class: one ``ZCARD`` and one ``HMGET`` per class with waiting jobs, read
from the per-service class indexes, never per job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emp_queue.core.keys import member_id
from emp_queue.core.pools import class_pool as pool_of_class
from emp_queue.core.pools import fallback_schedule
from emp_queue.core.replies import as_text

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue

NO_POOL = ""
"""Jobs of no pool (not measured yet, pools off) and workers without a pool."""


@dataclass
class PoolDepth:
    pool: str
    workers: int = 0
    idle_workers: int = 0
    waiting: int = 0
    waiting_by_service: dict[str, int] = field(default_factory=dict)
    falls_back_to: list[tuple[str, int]] = field(default_factory=list)
    """The pools its jobs fall back to, each with the wait (ms) before it may take them."""


async def pool_depths(queue: JobQueue) -> list[PoolDepth]:
    depths: dict[str, PoolDepth] = {}

    def depth(pool: str | None) -> PoolDepth:
        name = pool or NO_POOL
        if name not in depths:
            schedule = fallback_schedule(name, queue.pools) if name and queue.pools.enabled else []
            depths[name] = PoolDepth(name, falls_back_to=schedule)
        return depths[name]

    for info in await queue.workers():
        entry = depth(info.capabilities.pool)
        entry.workers += 1
        entry.idle_workers += 0 if info.running else 1
    for service, class_ids in (await _waiting_classes(queue)).items():
        async with queue.redis.pipeline(transaction=False) as pipe:
            for class_id in class_ids:
                pipe.zcard(queue.keys.class_pending(class_id))
                pipe.hmget(queue.keys.job_class(class_id), ["desc", "run_ms"])
            replies = await pipe.execute()
        for index in range(len(class_ids)):
            waiting, (desc, run_ms) = replies[2 * index], replies[2 * index + 1]
            requirements: dict[str, Any] = json.loads(as_text(desc)).get("req", {}) if desc else {}
            measured = float(as_text(run_ms)) if run_ms is not None else None
            entry = depth(pool_of_class(requirements, measured, queue.pools).pool)
            entry.waiting += int(waiting)
            entry.waiting_by_service[service] = entry.waiting_by_service.get(service, 0) + waiting
    return sorted(depths.values(), key=lambda d: (d.pool == NO_POOL, d.pool))


async def _waiting_classes(queue: JobQueue) -> dict[str, list[str]]:
    """Per service, the classes with claimable waiting jobs (the claim's own index)."""
    found: dict[str, list[str]] = {}
    for service in sorted(await queue.redis.smembers(queue.keys.services), key=as_text):
        name = as_text(service)
        entries: Any = await queue.redis.zrange(queue.keys.service_classes(name), 0, -1)
        if entries:
            found[name] = [member_id(entry) for entry in entries]
    return found
