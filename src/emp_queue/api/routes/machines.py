"""Machines and their logs: list, inspect, remove, restart a service (worker and admin keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from emp_queue.api.auth import Admin, Operator
from emp_queue.api.error_handlers import KEYED_ERRORS, MACHINE_ERRORS
from emp_queue.api.schemas import (
    ControlSentOut,
    LogLinesOut,
    MachineRemovedOut,
    MachinesOut,
)
from emp_queue.api.state import State
from emp_queue.core.machines import LEVELS
from emp_queue.machine_models import MachineRecord
from emp_queue.models import MAX_ORDER_MS, NAME_PATTERN

router = APIRouter(prefix="/api", tags=["machines"], responses=KEYED_ERRORS)

MachineId = Annotated[str, Path(pattern=NAME_PATTERN)]
ServiceName = Annotated[str, Path(pattern=NAME_PATTERN)]
LEVEL_PATTERN = "^(" + "|".join(LEVELS) + ")$"


@router.get("/machines", summary="List machines")
async def list_machines(_caller: Operator, state: State) -> MachinesOut:
    """Every known machine, most recently heard from first; ``online`` is false for a machine
    silent past the timeout or stopped."""
    return MachinesOut(machines=await state.machines.all())


@router.get("/machines/{machine_id}", summary="Get a machine", responses=MACHINE_ERRORS)
async def get_machine(machine_id: MachineId, _caller: Operator, state: State) -> MachineRecord:
    """The machine's last record: phase, hardware, startup steps, services, workers."""
    return await state.machines.get(machine_id)


@router.delete("/machines/{machine_id}", summary="Remove a machine", responses=MACHINE_ERRORS)
async def remove_machine(machine_id: MachineId, _caller: Admin, state: State) -> MachineRemovedOut:
    """Forget a machine (typically an offline one): its workers are removed and the jobs they
    held go back to the queue now, not when their leases run out."""
    requeued = await state.machines.remove(machine_id, state.queue)
    return MachineRemovedOut(machine_id=machine_id, requeued=requeued)


@router.post(
    "/machines/{machine_id}/services/{service}/restart",
    summary="Restart a service on a machine",
    status_code=status.HTTP_202_ACCEPTED,
    responses=MACHINE_ERRORS,
)
async def restart_service(
    machine_id: MachineId, service: ServiceName, _caller: Admin, state: State
) -> ControlSentOut:
    """Ask the machine's agent to restart one of its services; its status events follow."""
    action = {"action": "restart_service", "service": service}
    delivered = await state.machines.send_control(machine_id, action)
    return ControlSentOut(
        machine_id=machine_id, service=service, action="restart_service", delivered=delivered
    )


@router.get("/logs", summary="Search machine logs")
async def search_logs(
    _caller: Admin,
    state: State,
    machine: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    service: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    level: Annotated[
        str | None, Query(pattern=LEVEL_PATTERN, description="This level and above.")
    ] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text to find.")] = None,
    since_ms: Annotated[int | None, Query(ge=0, le=MAX_ORDER_MS)] = None,
    until_ms: Annotated[int | None, Query(ge=0, le=MAX_ORDER_MS)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> LogLinesOut:
    """The newest ``limit`` log lines matching every filter, oldest first."""
    lines = await state.machines.logs(
        machine_ids=[machine] if machine else None,
        service=service,
        level=level,
        text=q,
        since_ms=since_ms,
        until_ms=until_ms,
        limit=limit,
    )
    return LogLinesOut(lines=lines)
