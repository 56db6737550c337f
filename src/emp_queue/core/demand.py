"""Which models the waiting jobs need, and how many live workers hold each one.

Read from the class indexes (one entry per kind of job, never one per job) and the live
workers' capabilities; placement (the machine agent, the fleet simulator) ranks models by
the demand no worker meets yet. Nothing here changes the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emp_queue.core.inspection import workers
from emp_queue.core.matching import JobClass
from emp_queue.core.replies import as_text

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue


@dataclass(frozen=True)
class ModelDemand:
    """Waiting jobs of one service that need one model, and the workers holding it."""

    service: str
    model: str
    pending: int
    loaded_on: int
    installed_on: int

    @property
    def unmet(self) -> int:
        """Waiting jobs beyond one per worker that has the model loaded."""
        return max(0, self.pending - self.loaded_on)


async def _pending_by_model(queue: JobQueue, service: str) -> dict[str, int]:
    entries: Any = await queue.redis.zrange(queue.keys.service_classes(service), 0, -1)
    class_ids = sorted({as_text(entry)[13:] for entry in entries})
    async with queue.redis.pipeline(transaction=False) as pipe:
        for class_id in class_ids:
            pipe.hget(queue.keys.job_class(class_id), "desc")
            pipe.zcard(queue.keys.class_pending(class_id))
        replies = await pipe.execute()
    pending: dict[str, int] = {}
    for descriptor, count in zip(replies[0::2], replies[1::2], strict=True):
        if not descriptor or not count:
            continue
        for model in JobClass.from_descriptor(descriptor).requirements.get("models", []):
            pending[model] = pending.get(model, 0) + int(count)
    return pending


async def model_demand(queue: JobQueue) -> list[ModelDemand]:
    """Per service and model: waiting jobs and live workers holding it, most unmet first."""
    services: Any = await queue.redis.smembers(queue.keys.services)
    live = await workers(queue)
    demand = []
    for service in sorted(as_text(s) for s in services):
        for model, pending in (await _pending_by_model(queue, service)).items():
            held = [info.capabilities.models.get(service) for info in live]
            demand.append(
                ModelDemand(
                    service=service,
                    model=model,
                    pending=pending,
                    loaded_on=sum(1 for h in held if h is not None and model in h.loaded),
                    installed_on=sum(1 for h in held if h is not None and model in h.installed),
                )
            )
    demand.sort(key=lambda d: (-d.unmet, -d.pending, d.service, d.model))
    return demand
