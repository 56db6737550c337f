"""``POST /api/jobs/cancel``: cancel every waiting or running job of a workflow or a customer.

One request for what an operator (or a customer, for its own jobs) would otherwise do job by
job. Each job is cancelled through the same script as ``POST /api/jobs/{id}/cancel``, so a
running job's worker is told to stop and the events are the usual ``job_cancelled``; a job
that finishes meanwhile is counted as already finished, never failed over.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from emp_queue.api.audit import AuditLog
from emp_queue.api.auth import ClientOrAdmin, Principal
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.state import ApiState, State
from emp_queue.errors import InvalidTransitionError, JobNotFoundError
from emp_queue.models import JOB_ID_PATTERN, NAME_PATTERN, JobStatus

router = APIRouter(prefix="/api", tags=["jobs"], responses=KEYED_ERRORS)

UNFINISHED = (
    JobStatus.PENDING,
    JobStatus.UNWORKABLE,
    JobStatus.SCHEDULED,
    JobStatus.BLOCKED,
    JobStatus.ASSIGNED,
    JobStatus.IN_PROGRESS,
)
MAX_CANCELLED = 10_000
"""Jobs one request cancels at most; ``more`` says to send it again."""
PAGE = 1000


class BulkCancelIn(BaseModel):
    # The schema says what the validator below checks, so a schema-valid body is accepted.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["workflow_id"]}, {"required": ["customer_id"]}]},
    )

    workflow_id: str | None = Field(
        default=None,
        pattern=JOB_ID_PATTERN,
        description="The workflow of `customer_id` (a client key: its own customer's).",
    )
    customer_id: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Whose jobs (admin keys); a client key always means its own customer.",
    )
    reason: str = Field(default="cancelled in bulk", min_length=1, max_length=500)

    @model_validator(mode="after")
    def names_what(self) -> BulkCancelIn:
        if self.workflow_id is None and self.customer_id is None:
            raise ValueError("name a workflow_id or a customer_id (or both) to cancel its jobs")
        return self


class BulkCancelOut(BaseModel):
    cancelled: list[str] = Field(description="The jobs cancelled, newest first.")
    already_finished: int = Field(description="Jobs that finished before they could be.")
    more: bool = Field(description=f"True when {MAX_CANCELLED} were cancelled: send it again.")


def whose(body: BulkCancelIn, caller: Principal) -> str | None:
    if caller.customer_id is None:
        return body.customer_id
    if body.customer_id not in (None, caller.customer_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this key acts for customer {caller.customer_id!r}, not {body.customer_id!r}",
        )
    return caller.customer_id


@router.post("/jobs/cancel", summary="Cancel the jobs of a workflow or a customer")
async def cancel_many(
    body: BulkCancelIn, caller: ClientOrAdmin, state: State, request: Request
) -> BulkCancelOut:
    """Cancel every waiting or running job of ``workflow_id`` and/or ``customer_id``
    (recorded in the audit log as ``jobs.cancel_many``)."""
    customer_id = whose(body, caller)
    outcome = await cancel_all(state, body, customer_id)
    await AuditLog(state.queue.redis, state.queue.keys).append(
        "jobs.cancel_many",
        body.workflow_id or customer_id or "",
        actor=caller.key_id or "anonymous",
        role=caller.role.value,
        source=request.client.host if request.client else "unknown",
        status=200,
        detail={
            "workflow_id": body.workflow_id,
            "customer_id": customer_id,
            "cancelled": len(outcome.cancelled),
            "already_finished": outcome.already_finished,
        },
    )
    return outcome


async def cancel_all(state: ApiState, body: BulkCancelIn, customer_id: str | None) -> BulkCancelOut:
    cancelled: list[str] = []
    finished = 0
    for job_status in UNFINISHED:
        cursor: str | None = None
        while True:
            page = await state.queue.list_jobs(
                status=job_status,
                customer_id=customer_id,
                workflow_id=body.workflow_id,
                cursor=cursor,
                limit=PAGE,
            )
            for job in page.jobs:
                try:
                    await state.queue.cancel(job.id, body.reason)
                except (InvalidTransitionError, JobNotFoundError):
                    finished += 1
                    continue
                cancelled.append(job.id)
                if len(cancelled) == MAX_CANCELLED:
                    return BulkCancelOut(cancelled=cancelled, already_finished=finished, more=True)
            cursor = page.next_cursor
            if cursor is None:
                break
    return BulkCancelOut(cancelled=cancelled, already_finished=finished, more=False)
