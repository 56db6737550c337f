"""The data the whole system exchanges: jobs, their statuses, worker capabilities.

Pydantic models sit at the I/O edges (API bodies, Redis records, SDK results);
field names follow the original emp-job-queue so its clients keep working.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from emp_queue.errors import InvalidJobError
from emp_queue.labels import validate_label_tree

# Every id a user chooses (jobs, workflows, workers, machines, customers, services) is one safe
# path segment: it becomes part of Redis key names (``workflow:<id>:jobs``) and of asset paths
# (``<bucket>/<job id>/<file>``), so it holds no ``:`` or ``/`` and does not start with a dot
# (no ``.``, ``..`` or hidden name). ``core/keys.py`` relies on this for keys that cannot collide.
JOB_ID_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$"
NAME_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}$"
SCOPED_WORKFLOW_PATTERN = "^(" + NAME_PATTERN[1:-1] + "/)?" + JOB_ID_PATTERN[1:]
"""A workflow as the queue names it: ``<customer>/<workflow id>``, or the bare id for jobs
without a customer (see ``core/keys.py``: workflows are scoped per customer)."""

# The queue orders by milliseconds below 2^42 (year 2109) and adds durations to them: values
# beyond these bounds would overflow that arithmetic, so they are refused at the edge.
MAX_DURATION_S = 365 * 24 * 3600
MAX_ORDER_MS = 2**42 - 1
MAX_DEPENDENCIES = 100

JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]
ServiceName = Annotated[str, Field(pattern=NAME_PATTERN)]


class JobStatus(StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    UNWORKABLE = "unworkable"
    EXPIRED = "expired"
    SCHEDULED = "scheduled"
    """Submitted with ``run_at`` / ``delay_s``: not claimable before its time."""
    BLOCKED = "blocked"
    """Waits for the jobs it ``depends_on`` to complete."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_waiting(self) -> bool:
        return self in (JobStatus.PENDING, JobStatus.UNWORKABLE)


TERMINAL_STATUSES = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.TIMEOUT,
        JobStatus.EXPIRED,
    }
)


class FailureClass(StrEnum):
    """Who is to blame for a failure; decides whether the job is retried."""

    JOB_FAULT = "job_fault"
    """The job itself is bad (invalid workflow, refused content): fail at once."""
    WORKER_FAULT = "worker_fault"
    """The worker broke (crash, lost lease, out of memory): retry elsewhere."""
    SERVICE_FAULT = "service_fault"
    """The external AI service misbehaved (5xx, restart, lost prompt): retry elsewhere."""
    BROKER_FAULT = "broker_fault"
    """Redis was unreachable at a critical moment: retry."""
    TIMEOUT = "timeout"
    """The execution exceeded ``timeout_s``: final status ``timeout``."""

    @property
    def is_retryable(self) -> bool:
        return self in (
            FailureClass.WORKER_FAULT,
            FailureClass.SERVICE_FAULT,
            FailureClass.BROKER_FAULT,
        )


class EventType(StrEnum):
    JOB_SUBMITTED = "job_submitted"
    JOB_ASSIGNED = "job_assigned"
    JOB_STATUS_CHANGED = "job_status_changed"
    UPDATE_JOB_PROGRESS = "update_job_progress"
    COMPLETE_JOB = "complete_job"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    WORKER_CONNECTED = "worker_connected"
    WORKER_DISCONNECTED = "worker_disconnected"
    WORKER_STATUS_CHANGED = "worker_status_changed"
    MACHINE_STARTUP = "machine_startup"
    MACHINE_STARTUP_STEP = "machine_startup_step"
    MACHINE_STARTUP_COMPLETE = "machine_startup_complete"
    MACHINE_UPDATE = "machine_update"
    MACHINE_PLACEMENT = "machine_placement"
    MACHINE_SHUTDOWN = "machine_shutdown"
    WORKFLOW_SUBMITTED = "workflow_submitted"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"


class JobError(BaseModel):
    """Why a job failed, with the class that decided its retry."""

    model_config = ConfigDict(frozen=True)

    failure_class: FailureClass
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


MAX_JSON_DEPTH = 64
"""How deep a job's JSON (payload, ctx, requirements) may nest. One limit for every way in
(REST, batch, WebSocket): far beyond any real workflow, far below what breaks a reader."""


def json_depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0, ``{}`` 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH * 4:
            return deepest  # deep enough to refuse: no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_json_depth(value: Any, what: str) -> None:
    """Raise ValueError when ``value`` nests deeper than ``MAX_JSON_DEPTH``."""
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{what} nests {depth} or more levels deep; at most {MAX_JSON_DEPTH} are accepted: "
            "flatten it"
        )


class JobSpec(BaseModel):
    """What a client submits. Unknown fields are rejected, not ignored; numbers must be JSON
    numbers (``"50"`` or ``true`` is no priority)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: JobId | None = None
    service_required: ServiceName
    priority: int = Field(default=50, ge=0, le=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    requirements: dict[str, Any] = Field(default_factory=dict)
    customer_id: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    workflow_id: JobId | None = None
    workflow_priority: int | None = Field(default=None, ge=0, le=100)
    workflow_datetime: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ORDER_MS,
        description="Workflow start, in milliseconds since the epoch.",
    )
    current_step: int | None = Field(default=None, ge=1)
    total_steps: int | None = Field(default=None, ge=1)
    ctx: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=3, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    queue_ttl_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    webhook: str | None = None
    traceparent: str | None = None
    run_at: int | None = Field(
        default=None,
        ge=0,
        le=MAX_ORDER_MS,
        description="Not claimable before this time, in milliseconds since the epoch "
        "(status `scheduled` until then).",
    )
    delay_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DURATION_S,
        description="Not claimable before this many seconds after submission (Redis clock).",
    )
    depends_on: list[JobId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DEPENDENCIES,
        description="Ids of jobs (of the same customer) that must complete first; the job "
        "waits as `blocked` and is cancelled when one of them ends otherwise.",
    )
    after_previous_step: bool = Field(
        default=False,
        description="A workflow step that runs only once every job of the workflow's previous "
        "step (`current_step` - 1) submitted so far has completed.",
    )

    @model_validator(mode="after")
    def _one_way_to_wait(self) -> JobSpec:
        waits = [
            name
            for name, given in (
                ("run_at", self.run_at is not None),
                ("delay_s", self.delay_s is not None),
                ("depends_on", self.depends_on is not None),
                ("after_previous_step", self.after_previous_step),
            )
            if given
        ]
        if len(waits) > 1:
            raise ValueError(
                f"a job waits for one thing at most; {' and '.join(waits)} were given: "
                "keep one (a job that depends on others starts when they complete)"
            )
        if self.after_previous_step and (self.workflow_id is None or not self.current_step):
            raise ValueError(
                "after_previous_step needs workflow_id and current_step: it waits for the "
                "workflow's step current_step - 1"
            )
        if self.depends_on is not None and self.id is not None and self.id in self.depends_on:
            raise ValueError(f"job {self.id!r} cannot depend on itself")
        return self

    @field_validator("payload", "ctx", "requirements")
    @classmethod
    def _not_too_deep(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        check_json_depth(value, str(info.field_name))
        return value

    @property
    def effective_priority(self) -> int:
        return self.priority if self.workflow_priority is None else self.workflow_priority


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the queue knows it, at one moment.

    A plain frozen dataclass: it is built for every claimed job from a record our own
    scripts wrote, so it skips validation (the API serialises it with a pydantic adapter).
    """

    id: str
    service_required: str
    priority: int
    payload: dict[str, Any]
    requirements: dict[str, Any]
    max_attempts: int
    status: JobStatus
    attempt: int
    seq: int
    created_at: int
    customer_id: str | None = None
    workflow_id: str | None = None
    workflow_priority: int | None = None
    workflow_datetime: int | None = None
    current_step: int | None = None
    total_steps: int | None = None
    ctx: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    queue_ttl_s: float | None = None
    webhook: str | None = None
    traceparent: str | None = None
    failures: int = 0
    """Attempts that failed on their own (counted against ``max_attempts``)."""
    lost_leases: int = 0
    """Attempts lost because their worker vanished (counted against the queue's lost-lease
    budget, ``EMP_MAX_LOST_LEASES``, never against ``max_attempts``)."""
    worker_id: str | None = None
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: JobError | None = None
    dead_lettered: bool = False
    assigned_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    not_before: int | None = None
    """Not claimable before this time (ms): a scheduled job's ``run_at``, a retry's backoff."""
    depends_on: list[str] | None = None


@dataclass(frozen=True)
class Event:
    """One entry of the event stream: a transition, a progress report, a machine event.

    Here rather than in ``core.events`` because the SDK hands events to its users and must not
    need the server's Redis client to do so.
    """

    id: str
    type: str
    job_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job handed to a worker, with the attempt token every report must carry."""

    job: Job
    attempt: int
    lease_until_ms: int


class Hardware(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_count: int = Field(default=0, ge=0)
    gpu_memory_gb: float = Field(default=0, ge=0)
    gpu_model: str | None = None
    cpu_cores: int = Field(default=0, ge=0)
    ram_gb: float = Field(default=0, ge=0)


class ServiceModels(BaseModel):
    """Models of one service, in three levels: loaded in (GPU) memory right now, installed on
    disk, and fetchable (a source the worker can download it from before running a job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    installed: list[str] = Field(default_factory=list)
    loaded: list[str] = Field(default_factory=list)
    fetchable: list[str] = Field(default_factory=list)
    sizes: dict[str, int] = Field(
        default_factory=dict,
        description="Bytes per model (file size on disk or at its source), where known.",
    )
    last_used: dict[str, int] | None = Field(
        default=None,
        description="Unix seconds at which a job needing the model last finished on this "
        "worker, for the installed and loaded models it ran since it started. Absent "
        "(older workers, or none run yet): no model has a known last use.",
    )

    @field_validator("last_used")
    @classmethod
    def _check_last_used(cls, last_used: dict[str, int] | None) -> dict[str, int] | None:
        if last_used is not None and any(when < 0 for when in last_used.values()):
            raise ValueError("last_used times are Unix seconds (never negative)")
        return last_used or None  # {} is "none known": left out of the document


class NodeClasses(BaseModel):
    """The node classes a ComfyUI worker has (801 on a stock install), published compactly:
    the capabilities carry a fingerprint and a count, the names go once into the Redis set
    the fingerprint names, and the matcher tests a job's ``nodes`` against that set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint: str
    count: int = Field(ge=0)
    names: tuple[str, ...] = Field(default=(), exclude=True, repr=False)
    """Sent at registration only; never part of the capabilities document."""

    @classmethod
    def of(cls, names: Iterable[str]) -> NodeClasses:
        ordered = tuple(sorted(set(names)))
        digest = hashlib.sha1("\n".join(ordered).encode()).hexdigest()[:16]
        return cls(fingerprint=digest, count=len(ordered), names=ordered)


class CustomerAccess(BaseModel):
    """Which customers' jobs a worker may run. ``None`` lists mean "no restriction"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    isolation: Literal["none", "loose", "strict"] = "none"
    allowed_customers: list[str] | None = None
    denied_customers: list[str] = Field(default_factory=list)


class WorkerCapabilities(BaseModel):
    """What a worker can run; the matcher compares jobs' requirements against it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: list[ServiceName] = Field(min_length=1)
    hardware: Hardware = Field(default_factory=Hardware)
    models: dict[str, ServiceModels] = Field(default_factory=dict)
    nodes: NodeClasses | None = None
    """ComfyUI node classes; a worker that publishes none is not judged on ``nodes``."""
    customer_access: CustomerAccess = Field(default_factory=CustomerAccess)
    pool: str | None = None
    workflow_id: str | None = Field(
        default=None,
        pattern=SCOPED_WORKFLOW_PATTERN,
        description="Pin to one workflow: `<customer>/<workflow id>`, or the bare id for a "
        "workflow submitted without a customer.",
    )
    labels: dict[str, Any] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, Any]) -> dict[str, Any]:
        try:
            validate_label_tree(labels, "labels", allow_empty=True)
        except InvalidJobError as exc:
            raise ValueError(str(exc)) from exc
        return labels
