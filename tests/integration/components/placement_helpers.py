"""What the placement executor tests share: the recorded events, a worker registered with its
models, a loop on this machine ("here") and one decision."""

from __future__ import annotations

from typing import Any

from emp_queue import JobQueue, WorkerCapabilities
from emp_queue.machine.placement import Action, PlacementDecision
from emp_queue.machine.placement_loop import Budgets, PlacementLoop
from emp_queue.models import EventType

GB = 1_000_000_000


class Events:
    def __init__(self) -> None:
        self.fields: list[dict[str, Any]] = []

    async def __call__(self, event: EventType, **fields: Any) -> None:
        assert event is EventType.MACHINE_PLACEMENT
        self.fields.append(fields)

    def outcomes(self) -> list[tuple[str, str, str]]:
        return [
            (e["action"], e["model"], e["status"])
            for e in self.fields
            if e["status"] not in ("started", "progress")
        ]


async def register(queue: JobQueue, worker: str, service: str, **models: Any) -> None:
    caps = WorkerCapabilities.model_validate({"services": [service], "models": {service: models}})
    await queue.register_worker(worker, caps, machine_id="here")


def loop(queue: JobQueue, executor: Any, events: Events, vram_gb: float = 8) -> PlacementLoop:
    budgets = Budgets(vram_bytes=round(vram_gb * GB), disk_bytes=100 * GB)
    return PlacementLoop(queue, "here", budgets, executor, events, interval_s=60)


def decision(action: Action, service: str, model: str) -> PlacementDecision:
    return PlacementDecision(action, service, model, 0, "test")
