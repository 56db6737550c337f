"""Workflows (a workflow's steps and overall state) and the dead-letter list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from emp_queue.api.auth import Admin, ClientOrAdmin
from emp_queue.api.error_handlers import JOB_ERRORS
from emp_queue.api.routes.jobs import JobIdPath, job_out, no_such_job
from emp_queue.api.schemas import JobOut, JobsOut, WorkflowOut
from emp_queue.api.state import State
from emp_queue.errors import JobNotFoundError
from emp_queue.models import JOB_ID_PATTERN, NAME_PATTERN

router = APIRouter(prefix="/api", responses=JOB_ERRORS)


@router.get("/workflows/{workflow_id}", tags=["workflows"], summary="Get a workflow")
async def get_workflow(
    workflow_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
    caller: ClientOrAdmin,
    state: State,
    customer: Annotated[
        str | None,
        Query(
            pattern=NAME_PATTERN,
            description="Whose workflow (admin keys; a client key always reads its own "
            "customer's). Without it: the workflow submitted without a customer.",
        ),
    ] = None,
) -> WorkflowOut:
    """The workflow's steps and overall state. Workflows belong to a customer: the same id
    under two customers is two workflows, and another customer's answers 404."""
    if caller.customer_id is not None:
        customer = caller.customer_id
    try:
        workflow = await state.queue.workflow(workflow_id, customer)
    except JobNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no workflow {workflow_id!r}") from None
    jobs = [job for job in workflow.jobs if caller.sees_customer(job.customer_id)]
    return WorkflowOut(
        workflow_id=workflow.workflow_id,
        status=workflow.status,
        total_steps=workflow.total_steps,
        created_at=workflow.created_at,
        jobs=[job_out(job) for job in jobs],
    )


@router.get("/dead-letters", tags=["dead letters"], summary="List dead-lettered jobs")
async def list_dead_letters(
    _caller: Admin,
    state: State,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobsOut:
    """Jobs that used up their attempts, oldest first."""
    return JobsOut(jobs=[job_out(job) for job in await state.queue.dead_letters(offset, limit)])


@router.post(
    "/dead-letters/{job_id}/requeue", tags=["dead letters"], summary="Requeue a dead letter"
)
async def requeue_dead_letter(job_id: JobIdPath, _caller: Admin, state: State) -> JobOut:
    """Give a dead-lettered job a fresh attempt; 404 when the job is not dead-lettered."""
    try:
        job = await state.queue.get(job_id)
    except JobNotFoundError:
        raise no_such_job(job_id) from None
    if not job.dead_lettered:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"job {job_id!r} is {job.status.value} and not dead-lettered; "
            "POST /api/jobs/{id}/retry retries any finished job",
        )
    return job_out(await state.queue.retry(job_id, "dead_letter_requeue"))
