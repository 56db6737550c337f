"""Which models the waiting and arriving jobs need, and how many live workers hold each one.

Read from the class indexes (one entry per kind of job, never one per job), the per-minute
arrival counts ``submit.lua`` keeps per class (``arrivals:<minute>``, an hour of them) and the
live workers' capabilities; placement (the machine agent, the fleet simulator) ranks models
by the demand no worker meets yet. Nothing here changes the queue.

Expected costs are estimates from the model's size (the largest size a worker reports) and
two rates: ``load_bytes_per_s`` (disk to GPU memory) and ``download_bytes_per_s`` (source to
disk); both are parameters, defaulting to 2 GB/s and 100 MB/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emp_queue.core.inspection import workers
from emp_queue.core.keys import member_id
from emp_queue.core.matching import JobClass
from emp_queue.core.model_cost import DOWNLOAD_BYTES_PER_S, LOAD_BYTES_PER_S
from emp_queue.core.replies import as_text

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue


@dataclass(frozen=True)
class ModelDemand:
    """Waiting and arriving jobs of one service that need one model, and who holds it."""

    service: str
    model: str
    pending: int
    loaded_on: int
    installed_on: int
    arrivals_per_min_5m: float = 0.0
    """Jobs needing the model submitted per minute, over the last 5 minutes."""
    arrivals_per_min_60m: float = 0.0
    """The same over the last 60 minutes."""
    size_bytes: int | None = None
    expected_load_s: float | None = None
    """From disk into GPU memory (size / load rate); None when no worker reports a size."""
    expected_download_s: float | None = None
    """From its source onto disk (size / download rate)."""

    @property
    def unmet(self) -> int:
        """Waiting jobs beyond one per worker that has the model loaded."""
        return max(0, self.pending - self.loaded_on)


async def _classes(queue: JobQueue, class_ids: list[str]) -> dict[str, JobClass]:
    async with queue.redis.pipeline(transaction=False) as pipe:
        for class_id in class_ids:
            pipe.hget(queue.keys.job_class(class_id), "desc")
        descriptors = await pipe.execute()
    return {
        class_id: JobClass.from_descriptor(descriptor)
        for class_id, descriptor in zip(class_ids, descriptors, strict=True)
        if descriptor
    }


def _models(job_class: JobClass | None) -> list[str]:
    return list(job_class.requirements.get("models", [])) if job_class else []


async def _pending_by_model(queue: JobQueue, service: str) -> dict[str, int]:
    entries: Any = await queue.redis.zrange(queue.keys.service_classes(service), 0, -1)
    class_ids = sorted({member_id(entry) for entry in entries})
    async with queue.redis.pipeline(transaction=False) as pipe:
        for class_id in class_ids:
            pipe.zcard(queue.keys.class_pending(class_id))
        counts = await pipe.execute()
    classes = await _classes(queue, class_ids)
    pending: dict[str, int] = {}
    for class_id, count in zip(class_ids, counts, strict=True):
        for model in _models(classes.get(class_id)) if count else []:
            pending[model] = pending.get(model, 0) + int(count)
    return pending


async def _arrivals_by_model(
    queue: JobQueue, now_ms: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """(service, model) → jobs submitted in the last 5 and 60 minutes (this one included)."""
    minute = now_ms // 60_000
    async with queue.redis.pipeline(transaction=False) as pipe:
        for back in range(60):
            pipe.hgetall(queue.keys.arrivals(minute - back))
        buckets = await pipe.execute()
    per_class: dict[str, list[int]] = {}
    for back, bucket in enumerate(buckets):
        for raw_class, raw_count in bucket.items():
            counts = per_class.setdefault(as_text(raw_class), [0, 0])
            counts[1] += int(raw_count)
            if back < 5:
                counts[0] += int(raw_count)
    classes = await _classes(queue, list(per_class))
    arrivals: dict[tuple[str, str], tuple[int, int]] = {}
    for class_id, (recent, hour) in per_class.items():
        job_class = classes.get(class_id)
        if job_class is None:
            continue
        for model in _models(job_class):
            before = arrivals.get((job_class.service, model), (0, 0))
            arrivals[(job_class.service, model)] = (before[0] + recent, before[1] + hour)
    return arrivals


async def model_demand(
    queue: JobQueue,
    *,
    now_ms: int | None = None,
    load_bytes_per_s: float = LOAD_BYTES_PER_S,
    download_bytes_per_s: float = DOWNLOAD_BYTES_PER_S,
) -> list[ModelDemand]:
    """Per service and model waiting or submitted within the hour: jobs, arrival rates, live
    workers holding it, expected costs; most unmet first, then fastest arriving."""
    if now_ms is None:
        now_ms = round(time.time() * 1000)
    services: Any = await queue.redis.smembers(queue.keys.services)
    live = await workers(queue)
    arrivals = await _arrivals_by_model(queue, now_ms)
    demand = []
    for service in sorted(as_text(s) for s in services):
        pending = await _pending_by_model(queue, service)
        held = [info.capabilities.models.get(service) for info in live]
        models = set(pending) | {model for s, model in arrivals if s == service}
        for model in models:
            sizes = [h.sizes[model] for h in held if h is not None and model in h.sizes]
            size = max(sizes) if sizes else None
            recent, hour = arrivals.get((service, model), (0, 0))
            demand.append(
                ModelDemand(
                    service=service,
                    model=model,
                    pending=pending.get(model, 0),
                    loaded_on=sum(1 for h in held if h is not None and model in h.loaded),
                    installed_on=sum(1 for h in held if h is not None and model in h.installed),
                    arrivals_per_min_5m=recent / 5,
                    arrivals_per_min_60m=hour / 60,
                    size_bytes=size,
                    expected_load_s=None if size is None else size / load_bytes_per_s,
                    expected_download_s=None if size is None else size / download_bytes_per_s,
                )
            )
    demand.sort(key=lambda d: (-d.unmet, -d.pending, -d.arrivals_per_min_5m, d.service, d.model))
    return demand
