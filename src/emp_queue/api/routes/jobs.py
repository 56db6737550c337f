"""Jobs: submit, read, list, cancel, retry, explain.

A client key acts for one customer: its submissions carry that customer, and any other
customer's job answers 404 exactly as a job that does not exist.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from emp_queue.api.answer_deadline import SUBMITTED_IDS
from emp_queue.api.auth import CLIENT_OR_ADMIN_KEY, Admin, ClientOrAdmin, Principal
from emp_queue.api.error_handlers import JOB_ERRORS
from emp_queue.api.key_scope import check_service
from emp_queue.api.schemas import (
    BatchIn,
    CancelIn,
    ExplanationOut,
    JobOut,
    JobPageOut,
    JobsOut,
    NearestMissOut,
    PoolExplainOut,
    PoolFallbackOut,
    RequirementCountOut,
)
from emp_queue.api.state import ApiState, State, state_of
from emp_queue.api.strict_json import StrictJsonRoute, json_body
from emp_queue.core.pools import PoolExplanation
from emp_queue.errors import JobNotFoundError
from emp_queue.models import JOB_ID_PATTERN, NAME_PATTERN, Job, JobSpec, JobStatus, json_depth
from emp_queue.telemetry.tracing import traceparent_of

router = APIRouter(prefix="/api", tags=["jobs"], responses=JOB_ERRORS, route_class=StrictJsonRoute)

JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id.")]


MAX_READABLE_DEPTH = 200
"""Deeper JSON than this cannot be serialised (pydantic stops at 255 levels). Submissions are
refused far earlier (``MAX_JSON_DEPTH``); this guards records stored before that limit."""
_JSON_FIELDS = ("payload", "ctx", "requirements", "result")


def job_out(job: Job) -> JobOut:
    """The job as the API shows it; a field too deep to serialise is replaced by a note, so
    one bad record cannot break a read or a listing."""
    unreadable: dict[str, Any] = {
        name: {"unreadable": f"nested more than {MAX_READABLE_DEPTH} levels deep; not shown"}
        for name in _JSON_FIELDS
        if json_depth(getattr(job, name)) > MAX_READABLE_DEPTH
    }
    return JobOut.model_validate(dataclasses.replace(job, **unreadable) if unreadable else job)


def no_such_job(job_id: str) -> HTTPException:
    # The same answer whether the job does not exist or belongs to another customer.
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"no job {job_id!r} (unknown id, or expired after the retention period)",
    )


async def visible_job(job_id: JobIdPath, caller: ClientOrAdmin, state: State) -> Job:
    """The job named in the path, if the caller may see it (else 404)."""
    try:
        job = await state.queue.get(job_id)
    except JobNotFoundError:
        raise no_such_job(job_id) from None
    if not caller.sees_customer(job.customer_id):
        raise no_such_job(job_id)
    return job


VisibleJob = Annotated[Job, Depends(visible_job)]


def for_caller(spec: JobSpec, caller: Principal) -> JobSpec:
    """A client's job is its customer's: filled in when absent, refused when another. A key
    limited to services submits only for those."""
    check_service(caller.services, spec.service_required)
    if caller.customer_id is None:
        return spec
    if spec.customer_id is None:
        return spec.model_copy(update={"customer_id": caller.customer_id})
    if spec.customer_id != caller.customer_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this key submits for customer {caller.customer_id!r}, not {spec.customer_id!r}; "
            "drop customer_id or use that customer's key",
        )
    return spec


def owned(jobs: list[Job], caller: Principal) -> list[Job]:
    """Refuse a submission whose id already names another customer's job (no peeking)."""
    for job in jobs:
        if not caller.sees_customer(job.customer_id):
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"job id {job.id!r} is already taken; submit without an id or choose another",
            )
    return jobs


def with_ids(request: Request, specs: list[JobSpec]) -> list[JobSpec]:
    """Each spec with its id chosen now, before Redis is asked, and recorded for the 503 of
    an ambiguous outcome (:mod:`emp_queue.api.answer_deadline`): the client retries with it."""
    specs = [
        spec if spec.id is not None else spec.model_copy(update={"id": str(uuid.uuid4())})
        for spec in specs
    ]
    setattr(request.state, SUBMITTED_IDS, [str(spec.id) for spec in specs])
    return specs


def count_submitted(state: ApiState, jobs: list[Job]) -> None:
    for job in jobs:
        state.metrics.jobs_submitted.labels(service=job.service_required).inc()


# POST /api/jobs reads its key and body itself: FastAPI's dependency machinery costs more
# than the rest of the route (docs/decisions/0008-submit-route-without-dependencies.md).
# What FastAPI would derive from the parameters is declared here for the OpenAPI document.
SUBMIT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
    },
    "security": [{CLIENT_OR_ADMIN_KEY.scheme_name: []}],
}


@router.post(
    "/jobs",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a job",
    response_model=JobOut,
    openapi_extra=SUBMIT_OPENAPI,
)
async def submit_job(request: Request) -> Response:
    """Submit one job. Submitting an id that exists returns the existing job unchanged."""
    caller = await CLIENT_OR_ADMIN_KEY(request)
    spec = await json_body(request, JobSpec)
    state = state_of(request)
    if state.tracing is None:
        return await _submit(request, state, caller, spec)
    incoming = request.headers.get("traceparent") or spec.traceparent
    with state.tracing.request("POST", "/api/jobs", incoming) as span:
        spec = spec.model_copy(update={"traceparent": traceparent_of(span)})
        return await _submit(request, state, caller, spec)


async def _submit(request: Request, state: ApiState, caller: Principal, spec: JobSpec) -> Response:
    (spec,) = with_ids(request, [for_caller(spec, caller)])  # before any Redis call
    await state.services.check([spec.service_required])
    (job,) = owned([await state.queue.submit(spec)], caller)
    count_submitted(state, [job])
    return Response(job_out(job).model_dump_json(), status.HTTP_201_CREATED,
                    media_type="application/json")  # fmt: skip


@router.post("/jobs/batch", status_code=status.HTTP_201_CREATED, summary="Submit jobs")
async def submit_batch(
    request: Request, batch: BatchIn, caller: ClientOrAdmin, state: State
) -> JobsOut:
    """Submit up to 10,000 jobs in order, all checked before any is stored: one refused job
    (invalid, unknown service, an id another customer holds) stores none."""
    if state.tracing is None:
        return await _submit_batch(request, batch.jobs, caller, state)
    with state.tracing.request(
        "POST", "/api/jobs/batch", request.headers.get("traceparent")
    ) as span:
        # Every job of the batch continues this request's trace.
        traced = {"traceparent": traceparent_of(span)}
        return await _submit_batch(
            request, [spec.model_copy(update=traced) for spec in batch.jobs], caller, state
        )


async def _submit_batch(
    request: Request, submitted: list[JobSpec], caller: Principal, state: ApiState
) -> JobsOut:
    specs = with_ids(request, [for_caller(spec, caller) for spec in submitted])
    await state.services.check({spec.service_required for spec in specs})
    owned(await state.queue.get_many([spec.id for spec in specs if spec.id is not None]), caller)
    jobs = owned(await state.queue.submit_many(specs), caller)
    count_submitted(state, jobs)
    return JobsOut(jobs=[job_out(job) for job in jobs])


@router.get("/jobs", summary="List jobs")
async def list_jobs(
    caller: ClientOrAdmin,
    state: State,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    service: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    customer: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    workflow: Annotated[str | None, Query(pattern=JOB_ID_PATTERN)] = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPageOut:
    """Jobs matching every filter given, a page at a time (follow `next_cursor`).

    A client key lists its own customer's jobs only."""
    if caller.customer_id is not None:
        if customer not in (None, caller.customer_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this key lists customer {caller.customer_id!r} only, not {customer!r}",
            )
        customer = caller.customer_id
    page = await state.queue.list_jobs(
        status=status_filter,
        service=service,
        customer_id=customer,
        workflow_id=workflow,
        cursor=cursor,
        limit=limit,
    )
    return JobPageOut(jobs=[job_out(job) for job in page.jobs], next_cursor=page.next_cursor)


@router.get("/jobs/{job_id}", summary="Get a job")
async def get_job(job: VisibleJob) -> JobOut:
    return job_out(job)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a job")
async def cancel_job(job: VisibleJob, state: State, body: CancelIn | None = None) -> JobOut:
    """Cancel a waiting or running job (409 when it is already finished)."""
    reason = body.reason if body is not None else CancelIn().reason
    return job_out(await state.queue.cancel(job.id, reason))


@router.post("/jobs/{job_id}/retry", summary="Retry a job")
async def retry_job(job_id: JobIdPath, _caller: Admin, state: State) -> JobOut:
    """Requeue a failed, timed-out, expired or cancelled job (409 otherwise)."""
    return job_out(await state.queue.retry(job_id))


@router.get("/jobs/{job_id}/explain", summary="Why is this job waiting")
async def explain_job(job: VisibleJob, caller: ClientOrAdmin, state: State) -> ExplanationOut:
    """Live workers for its service, how many satisfy each requirement, the nearest miss and
    its position among the jobs those workers can run (for a client key: among its own
    customer's jobs, so no customer learns another's volume)."""
    explanation = await state.queue.explain(
        job.id, own_customer_only=caller.customer_id is not None
    )
    miss, estimate = explanation.nearest_miss, explanation.estimated_start
    cost = explanation.model_cost
    return ExplanationOut(
        job_id=explanation.job_id,
        status=explanation.status,
        live_workers=explanation.live_workers,
        serving_service=explanation.serving_service,
        matching_workers=explanation.matching_workers,
        requirements=[RequirementCountOut.model_validate(r) for r in explanation.requirements],
        nearest_miss=None if miss is None else NearestMissOut(worker_id=miss[0], reasons=miss[1]),
        position=explanation.position,
        derived_requirements=explanation.derived_requirements,
        service_down_workers=explanation.service_down_workers,
        customer_cap=explanation.customer_cap,
        estimated_start_s=estimate.in_s if estimate else None,
        estimate_basis=estimate.basis if estimate else None,
        held=list(explanation.held),
        pool=None if explanation.pool is None else pool_out(explanation.pool),
        model_load_s=cost.load_s if cost else None,
        model_download_s=cost.download_s if cost else None,
        model_cost_basis=cost.basis if cost else None,
    )


def pool_out(pool: PoolExplanation) -> PoolExplainOut:
    return PoolExplainOut(
        pool=pool.pool,
        decided_by=pool.source.value,
        run_ms=pool.run_ms,
        fallback=[PoolFallbackOut(pool=p, from_ms=at) for p, at in pool.fallback],
        summary=pool.summary(round(time.time() * 1000)),
    )
