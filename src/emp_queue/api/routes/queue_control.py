"""Queue control: pause, drain and resume a service's queue, pause and resume a pool (admin
keys; recorded in the audit log). See docs/scheduling.md, "Queue control"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from emp_queue.api.auth import Admin, Principal
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.schemas import QueueControlOut
from emp_queue.api.state import ApiState, State
from emp_queue.core.queue_control import ControlTarget, QueueState, set_state
from emp_queue.models import NAME_PATTERN

router = APIRouter(prefix="/api", tags=["fleet"], responses=KEYED_ERRORS)

ServicePath = Annotated[str, Path(pattern=NAME_PATTERN, description="The service.")]
PoolPath = Annotated[str, Path(pattern=NAME_PATTERN, description="The pool.")]


class QueueControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(
        default=None, max_length=500, description="Why: shown by explain, emp queues, monitor."
    )


async def _set(
    state: ApiState,
    caller: Principal,
    target: ControlTarget,
    name: str,
    queue_state: QueueState,
    body: QueueControlIn | None,
) -> QueueControlOut:
    control = await set_state(
        state.queue.redis,
        state.queue.keys,
        target,
        name,
        queue_state,
        by=caller.key_id,
        reason=body.reason if body is not None else None,
    )
    if queue_state is QueueState.OPEN:
        await state.queue.wake_idle_workers([name] if target is ControlTarget.SERVICE else [])
    return QueueControlOut.model_validate(control)


@router.post("/queues/{service}/pause", summary="Pause a service's queue")
async def pause_service(
    service: ServicePath, caller: Admin, state: State, body: QueueControlIn | None = None
) -> QueueControlOut:
    """Its jobs are accepted and wait (explain says why); no worker claims them until resumed.
    Running jobs finish."""
    return await _set(state, caller, ControlTarget.SERVICE, service, QueueState.PAUSED, body)


@router.post("/queues/{service}/drain", summary="Drain a service's queue")
async def drain_service(
    service: ServicePath, caller: Admin, state: State, body: QueueControlIn | None = None
) -> QueueControlOut:
    """New submissions are refused (409 `queue_draining`); waiting jobs run, so the queue
    empties. Resume to accept jobs again."""
    return await _set(state, caller, ControlTarget.SERVICE, service, QueueState.DRAINING, body)


@router.post("/queues/{service}/resume", summary="Resume a service's queue")
async def resume_service(service: ServicePath, caller: Admin, state: State) -> QueueControlOut:
    """Back to normal: claims and submissions as usual; idle workers are woken."""
    return await _set(state, caller, ControlTarget.SERVICE, service, QueueState.OPEN, None)


@router.post("/pools/{pool}/pause", summary="Pause a pool")
async def pause_pool(
    pool: PoolPath, caller: Admin, state: State, body: QueueControlIn | None = None
) -> QueueControlOut:
    """The pool's workers claim nothing (their running jobs finish); other pools go on."""
    return await _set(state, caller, ControlTarget.POOL, pool, QueueState.PAUSED, body)


@router.post("/pools/{pool}/resume", summary="Resume a pool")
async def resume_pool(pool: PoolPath, caller: Admin, state: State) -> QueueControlOut:
    return await _set(state, caller, ControlTarget.POOL, pool, QueueState.OPEN, None)
