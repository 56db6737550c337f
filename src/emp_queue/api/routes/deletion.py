"""Deleting data: one finished job with its stored outputs, or everything of a customer.

``DELETE /api/jobs/{id}`` removes a finished job now rather than after the retention period:
its record, its index entries and counts (``delete.lua``), and the outputs its result points
at in asset storage. ``POST /api/customers/{id}/erase`` (admin keys) cancels the customer's
unfinished jobs, deletes every job of theirs with its outputs and the files they uploaded,
revokes their API keys, deletes their policy and usage, and answers with what it removed.
Both are recorded in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from emp_queue.api.auth import Admin
from emp_queue.api.error_handlers import JOB_ERRORS
from emp_queue.api.key_store import Role
from emp_queue.api.routes.bulk import BulkCancelIn, cancel_all
from emp_queue.api.routes.jobs import VisibleJob
from emp_queue.api.state import ApiState, State
from emp_queue.core.customer_erasure import erase_customer_records
from emp_queue.errors import InvalidTransitionError, JobNotFoundError
from emp_queue.models import NAME_PATTERN

router = APIRouter(prefix="/api", tags=["deletion"], responses=JOB_ERRORS)

ASSET_FIELDS = frozenset({"provider", "bucket", "key", "sha256"})
PAGE = 1000


class JobDeletedOut(BaseModel):
    job_id: str
    status: str = Field(description="The status the job had when it was deleted.")
    assets_deleted: list[str] = Field(description="provider:bucket/key of each removed output.")
    assets_missing: int = Field(description="Outputs the result named that were already gone.")


class CustomerErasedOut(BaseModel):
    customer_id: str
    jobs_cancelled: int
    jobs_deleted: int
    assets_deleted: int
    assets_missing: int
    uploads_deleted: int = Field(description="Input files the customer had uploaded.")
    keys_revoked: list[str] = Field(description="Ids of the customer's API keys, now revoked.")
    policy_deleted: bool = Field(description="Whether the customer had a policy (now gone).")
    usage_fields_deleted: int = Field(description="Hourly usage figures removed.")


def stored_assets(result: Any) -> Iterator[dict[str, Any]]:
    """Every stored output (``StoredAsset.as_result()``) anywhere in a job's result."""
    if isinstance(result, dict):
        if result.keys() >= ASSET_FIELDS:
            yield result
            return
        for value in result.values():
            yield from stored_assets(value)
    elif isinstance(result, list):
        for value in result:
            yield from stored_assets(value)


async def delete_job(state: ApiState, job_id: str) -> JobDeletedOut:
    _service, last_status, result = await state.queue.delete(job_id)
    storage = state.storage
    deleted: list[str] = []
    missing = 0
    for asset in stored_assets(result):
        backend = storage.backends.get(asset["provider"])
        if backend is not None and await backend.delete(asset["bucket"], asset["key"]):
            deleted.append(f"{asset['provider']}:{asset['bucket']}/{asset['key']}")
        else:
            missing += 1
    return JobDeletedOut(
        job_id=job_id, status=last_status, assets_deleted=deleted, assets_missing=missing
    )


@router.delete("/jobs/{job_id}", summary="Delete a finished job and its outputs")
async def delete_finished_job(job: VisibleJob, state: State) -> JobDeletedOut:
    """Delete a finished job now, with the outputs its result points at (409 while it waits
    or runs: cancel it first). A client key deletes its own customer's jobs only."""
    return await delete_job(state, job.id)


@router.post("/customers/{customer_id}/erase", summary="Erase everything of a customer")
async def erase_customer(
    customer_id: Annotated[str, Path(pattern=NAME_PATTERN)], _caller: Admin, state: State
) -> CustomerErasedOut:
    """Cancel the customer's unfinished jobs, delete all their jobs with their outputs and
    their uploads, revoke their API keys, delete their policy, fair-share figure and usage
    rows; the answer counts what was removed."""
    cancelled = 0
    while True:
        outcome = await cancel_all(
            state, BulkCancelIn(customer_id=customer_id, reason="customer erased"), customer_id
        )
        cancelled += len(outcome.cancelled)
        if not outcome.more:
            break
    erased = CustomerErasedOut(
        customer_id=customer_id,
        jobs_cancelled=cancelled,
        jobs_deleted=0,
        assets_deleted=0,
        assets_missing=0,
        uploads_deleted=0,
        keys_revoked=[],
        policy_deleted=False,
        usage_fields_deleted=0,
    )
    cursor: str | None = None
    while True:
        page = await state.queue.list_jobs(customer_id=customer_id, cursor=cursor, limit=PAGE)
        for job in page.jobs:
            try:
                removed = await delete_job(state, job.id)
            except (JobNotFoundError, InvalidTransitionError):
                continue  # gone meanwhile, or submitted after the cancel: left as it is
            erased.jobs_deleted += 1
            erased.assets_deleted += len(removed.assets_deleted)
            erased.assets_missing += removed.assets_missing
        cursor = page.next_cursor
        if cursor is None:
            break
    erased.uploads_deleted = await state.storage.delete_uploads(customer_id)
    for key in await state.key_store.list():
        if key.role is Role.CLIENT and key.customer_id == customer_id:
            await state.key_store.revoke(key.key_id, source=f"erase of customer {customer_id}")
            erased.keys_revoked.append(key.key_id)
    erased.policy_deleted, erased.usage_fields_deleted = await erase_customer_records(
        state.queue.redis, state.queue.keys, customer_id
    )
    return erased
