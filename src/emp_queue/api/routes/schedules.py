"""Recurring schedules: a cron expression and a job template (docs/scheduling.md).

A client key creates and sees its own customer's schedules only; each tick's job belongs to
that customer, as if it had submitted it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

from emp_queue.api.auth import ClientOrAdmin, Principal
from emp_queue.api.error_handlers import JOB_ERRORS
from emp_queue.api.routes.jobs import for_caller
from emp_queue.api.state import ApiState, State
from emp_queue.core.schedules import Schedule, ScheduleExistsError, ScheduleSpec, ScheduleStore
from emp_queue.errors import JobNotFoundError
from emp_queue.models import NAME_PATTERN

router = APIRouter(prefix="/api", tags=["schedules"], responses=JOB_ERRORS)

ScheduleIdPath = Annotated[str, Path(pattern=NAME_PATTERN, description="The schedule's id.")]


class SchedulesOut(BaseModel):
    schedules: list[Schedule]


class ScheduleDeletedOut(BaseModel):
    schedule_id: str
    deleted: bool


def _store(state: ApiState) -> ScheduleStore:
    return ScheduleStore(state.queue.redis, state.queue.keys)


def _no_such_schedule(schedule_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no schedule {schedule_id!r}")


async def _visible(state: ApiState, caller: Principal, schedule_id: str) -> Schedule:
    try:
        schedule = await _store(state).get(schedule_id)
    except JobNotFoundError:
        raise _no_such_schedule(schedule_id) from None
    if not caller.sees_customer(schedule.customer_id):
        raise _no_such_schedule(schedule_id)
    return schedule


@router.post("/schedules", status_code=status.HTTP_201_CREATED, summary="Create a schedule")
async def create_schedule(spec: ScheduleSpec, caller: ClientOrAdmin, state: State) -> Schedule:
    """Every tick of `cron` (in `timezone`) submits `job` once, with the id
    `<schedule id>.<tick ms>`. 409 when the id exists."""
    job = for_caller(spec.job, caller)
    await state.services.check([job.service_required])
    schedule_id = spec.id or str(uuid.uuid4())
    try:
        return await _store(state).create(spec.model_copy(update={"job": job}), schedule_id)
    except ScheduleExistsError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


@router.get("/schedules", summary="List schedules")
async def list_schedules(caller: ClientOrAdmin, state: State) -> SchedulesOut:
    """With each: its next tick, the last tick that submitted a job, and that job's id."""
    found = await _store(state).all()
    return SchedulesOut(schedules=[s for s in found if caller.sees_customer(s.customer_id)])


@router.get("/schedules/{schedule_id}", summary="Get a schedule")
async def get_schedule(
    schedule_id: ScheduleIdPath, caller: ClientOrAdmin, state: State
) -> Schedule:
    return await _visible(state, caller, schedule_id)


@router.delete("/schedules/{schedule_id}", summary="Delete a schedule")
async def delete_schedule(
    schedule_id: ScheduleIdPath, caller: ClientOrAdmin, state: State
) -> ScheduleDeletedOut:
    """No tick submits after this; jobs already submitted stay."""
    await _visible(state, caller, schedule_id)
    return ScheduleDeletedOut(
        schedule_id=schedule_id, deleted=await _store(state).delete(schedule_id)
    )
