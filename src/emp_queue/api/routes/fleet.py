"""The fleet's view: workers and queue depths (worker and admin keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from emp_queue.api.auth import Admin, Operator
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.schemas import (
    PoolDepthOut,
    PoolFallbackStepOut,
    PoolsOut,
    QueueControlOut,
    QueueDepthOut,
    QueuesOut,
    WorkerOut,
    WorkerRemovedOut,
    WorkersOut,
)
from emp_queue.api.state import State
from emp_queue.core.pool_depths import pool_depths
from emp_queue.core.queue_control import controls as queue_controls
from emp_queue.models import NAME_PATTERN

router = APIRouter(prefix="/api", tags=["fleet"], responses=KEYED_ERRORS)


@router.get("/workers", summary="List live workers")
async def list_workers(_caller: Operator, state: State) -> WorkersOut:
    """Every registered worker: capabilities, status, last heartbeat and running jobs."""
    return WorkersOut(workers=[WorkerOut.model_validate(w) for w in await state.queue.workers()])


@router.delete("/workers/{worker_id}", summary="Remove a worker")
async def remove_worker(
    worker_id: Annotated[str, Path(pattern=NAME_PATTERN)], _caller: Admin, state: State
) -> WorkerRemovedOut:
    """Deregister a worker now instead of waiting for it to go silent (admin keys only).

    Jobs it still holds return to the queue when their leases expire. A worker that is still
    running registers again on its next heartbeat."""
    removed = await state.queue.deregister_worker(worker_id, "removed_by_operator")
    return WorkerRemovedOut(worker_id=worker_id, removed=removed)


@router.get("/queues", summary="Queue depths")
async def list_queues(_caller: Operator, state: State) -> QueuesOut:
    """Jobs per service and status, how long the oldest waiting job has waited, and the
    services and pools an operator paused or drained."""
    depths = await state.queue.queue_depths()
    controls = await queue_controls(state.queue.redis, state.queue.keys)
    return QueuesOut(
        queues=[QueueDepthOut.model_validate(d) for d in depths],
        controls=[QueueControlOut.model_validate(c) for c in controls],
    )


@router.get("/pools", summary="Workers and waiting jobs per pool")
async def list_pools(_caller: Operator, state: State) -> PoolsOut:
    """Per pool: live workers (and how many are idle), jobs waiting whose pool it is (by
    requirement or measured run time, per service) and the pools they fall back to. Pool ""
    gathers workers without a pool and jobs without one (not measured yet)."""
    return PoolsOut(
        pools=[
            PoolDepthOut(
                pool=d.pool,
                workers=d.workers,
                idle_workers=d.idle_workers,
                waiting=d.waiting,
                waiting_by_service=d.waiting_by_service,
                falls_back_to=[
                    PoolFallbackStepOut(pool=p, after_s=ms / 1000) for p, ms in d.falls_back_to
                ],
            )
            for d in await pool_depths(state.queue)
        ]
    )
