"""Request and response bodies of the API: the OpenAPI document is built from these.

The core hands out frozen dataclasses (``Job``, ``Explanation`` ...); routes convert them here
so every response has a declared schema and nothing internal leaks by accident.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emp_queue.machine_models import LogLine, MachineRecord
from emp_queue.models import JobError, JobSpec, JobStatus, WorkerCapabilities

MAX_BATCH = 10_000
"""Queue order keeps times below 2^42 ms (year 2109) exact; see ``PRIORITY_SCALE`` in core."""


class ApiModel(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class FieldProblem(ApiModel):
    field: str = Field(description="Where the problem is, e.g. `body.priority` or `query.limit`.")
    problem: str


class ErrorBody(ApiModel):
    """Every error response has this shape."""

    error: str = Field(description="A stable, machine-readable code such as `not_found`.")
    message: str = Field(description="What happened and what to do about it.")
    detail: list[FieldProblem] = Field(
        default_factory=list, description="One entry per invalid field (validation errors)."
    )
    job_ids: list[str] = Field(
        default_factory=list,
        description="A submission whose outcome is unknown (503): the ids its jobs may have "
        "been stored under. Submit again with these ids to get those jobs, never duplicates.",
    )


class JobOut(ApiModel):
    id: str
    service_required: str
    status: JobStatus
    priority: int
    payload: dict[str, Any]
    requirements: dict[str, Any]
    customer_id: str | None
    workflow_id: str | None
    workflow_priority: int | None
    workflow_datetime: int | None
    current_step: int | None
    total_steps: int | None
    ctx: dict[str, Any]
    max_attempts: int
    timeout_s: float | None
    queue_ttl_s: float | None
    webhook: str | None
    traceparent: str | None
    attempt: int
    seq: int = Field(description="Submit sequence: the job's place in FIFO order.")
    failures: int = Field(description="Attempts that failed, counted against max_attempts.")
    lost_leases: int = Field(
        default=0,
        description="Attempts lost because their worker vanished (killed, preempted); counted "
        "against the queue's EMP_MAX_LOST_LEASES, never against max_attempts.",
    )
    worker_id: str | None
    progress: float | None
    message: str | None
    result: Any
    error: JobError | None
    dead_lettered: bool
    created_at: int = Field(description="Milliseconds since the epoch, like every `*_at` field.")
    assigned_at: int | None
    started_at: int | None
    finished_at: int | None
    not_before: int | None = Field(
        default=None,
        description="Not claimable before this time: a scheduled job's run time, a retry's "
        "backoff.",
    )
    depends_on: list[str] | None = Field(
        default=None, description="Jobs that must complete before this one runs."
    )


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSpec] = Field(min_length=1, max_length=MAX_BATCH)


class JobsOut(ApiModel):
    jobs: list[JobOut]


class JobPageOut(ApiModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled by client", min_length=1, max_length=500)


class RequirementCountOut(ApiModel):
    requirement: str
    satisfied_by: int = Field(description="Live workers serving the service that satisfy it.")


class NearestMissOut(ApiModel):
    worker_id: str
    reasons: list[str] = Field(description="Why this worker cannot run the job.")


class PoolFallbackOut(ApiModel):
    pool: str
    from_ms: int = Field(description="When (ms since the epoch) this pool's workers may take it.")


class PoolExplainOut(ApiModel):
    pool: str | None = Field(description="The job's pool; null: workers of every pool take it.")
    decided_by: str = Field(
        description="requirement (named in the job), measured (its class's run time), "
        "unmeasured (no run time yet: no pool) or off (pools off, or a list of pools: a hard "
        "requirement)."
    )
    run_ms: float | None = Field(description="The class's moving run-time estimate, if any.")
    fallback: list[PoolFallbackOut] = Field(
        description="The pools the job falls back to, in order, each with when it may."
    )
    summary: str


class PoolFallbackStepOut(ApiModel):
    pool: str
    after_s: float = Field(description="How long a job waits before this pool may take it.")


class PoolDepthOut(ApiModel):
    pool: str = Field(description='The pool; "" for workers and jobs without one.')
    workers: int
    idle_workers: int
    waiting: int = Field(description="Claimable waiting jobs whose pool this is.")
    waiting_by_service: dict[str, int]
    falls_back_to: list[PoolFallbackStepOut]


class PoolsOut(ApiModel):
    pools: list[PoolDepthOut]


class ExplanationOut(ApiModel):
    job_id: str
    status: JobStatus
    live_workers: int
    serving_service: int
    matching_workers: int
    requirements: list[RequirementCountOut]
    nearest_miss: NearestMissOut | None
    position: int | None = Field(
        description="Place among waiting jobs the matching workers can run (0 = next); "
        "for a client key only its own customer's jobs count. Null when the job is not waiting."
    )
    derived_requirements: dict[str, list[str]] = Field(
        description="Models and node classes read from the payload at submit (already part "
        'of the requirements; `{"derive": false}` in the requirements turns this off).'
    )
    service_down_workers: int = Field(
        default=0,
        description="Matching workers whose service does not answer now: they claim nothing "
        "until it does, and the job waits for them instead of failing.",
    )
    customer_cap: str | None = Field(
        default=None,
        description="Set while the job waits for its customer's running cap, e.g. "
        '"customer acme is at its cap of 5 running jobs".',
    )
    estimated_start_s: float | None = Field(
        default=None,
        description="Seconds from now until the job should start, from its position, the "
        "matching workers and their measured run times; null when not waiting or unknown.",
    )
    held: list[str] = Field(
        default_factory=list,
        description="Why the job is kept waiting on purpose: scheduled for later, blocked on "
        "the jobs it depends on, its service (or every matching worker's pool) paused.",
    )
    estimate_basis: str | None = Field(
        default=None, description="What `estimated_start_s` rests on, in words."
    )
    pool: PoolExplainOut | None = Field(
        default=None, description="While the job waits: its pool and its fallback (matching.md)."
    )
    model_load_s: float | None = Field(
        default=None,
        description="While the job waits: expected seconds to load its models on the best "
        "placed matching worker (0: loaded there); null when unknown or no model is needed.",
    )
    model_download_s: float | None = Field(
        default=None, description="Expected seconds to download its models first (0: on disk)."
    )
    model_cost_basis: str | None = Field(
        default=None, description="What the model figures rest on, in words."
    )


class WorkflowOut(ApiModel):
    workflow_id: str
    status: str
    total_steps: int | None
    created_at: int
    jobs: list[JobOut]


class WorkerOut(ApiModel):
    worker_id: str
    machine_id: str | None
    status: str
    last_seen_ms: int
    capabilities: WorkerCapabilities
    running: list[str]


class WorkersOut(ApiModel):
    workers: list[WorkerOut]


class WorkerRemovedOut(ApiModel):
    worker_id: str
    removed: bool = Field(description="False when no such worker was registered.")


class QueueDepthOut(ApiModel):
    service: str
    state: Literal["open", "paused", "draining"] = Field(
        default="open", description="Queue control: see `controls` for who set it and why."
    )
    counts: dict[str, int] = Field(description="Jobs per status.")
    oldest_wait_ms: int | None = Field(description="How long the oldest waiting job has waited.")


class QueueControlOut(ApiModel):
    target: Literal["service", "pool"]
    name: str
    state: Literal["open", "paused", "draining"]
    since_ms: int | None = None
    by: str | None = Field(default=None, description="The API key that set it.")
    reason: str | None = None


class QueuesOut(ApiModel):
    queues: list[QueueDepthOut]
    controls: list[QueueControlOut] = Field(
        default_factory=list,
        description="Services and pools an operator paused or drained (the rest are open).",
    )


class EventOut(ApiModel):
    id: str = Field(description="The event stream entry id; resume after it with Last-Event-ID.")
    type: str
    job_id: str | None
    data: dict[str, Any]


class HealthOut(ApiModel):
    status: str


class ReadyOut(ApiModel):
    status: str
    detail: str | None = None


class VersionOut(ApiModel):
    version: str


class MachinesOut(ApiModel):
    machines: list[MachineRecord]


class MachineRemovedOut(ApiModel):
    machine_id: str
    requeued: int = Field(description="Jobs its workers held, now back in the queue.")


class ControlSentOut(ApiModel):
    machine_id: str
    service: str | None = None
    action: str
    delivered: int = Field(description="Agents that received the action (0: none listening).")


class LogLinesOut(ApiModel):
    lines: list[LogLine] = Field(description="Oldest first.")
