"""The WebSocket protocol of the original emp-job-queue: message models and event rendering.

Every message is a JSON object with ``type`` and ``timestamp`` (milliseconds). Inbound
messages are a discriminated union on ``type``, so a bad one is answered with an ``error``
naming the field and the problem. Events are sent flat, as the original did
(``{"type": "update_job_progress", "job_id": ..., "progress": 50.0, ...}``), with the stream
entry id as ``event_id`` so a monitor can resume after it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from emp_queue.api.error_handlers import EMP_ERROR_STATUS, error_code
from emp_queue.api.schemas import FieldProblem, JobOut, QueueDepthOut, WorkerOut
from emp_queue.api.strict_json import finite_float, refuse_constant
from emp_queue.core.events import STREAM_ID_PATTERN, Event
from emp_queue.core.refusals import describe, refusal
from emp_queue.models import JOB_ID_PATTERN, JobId, JobSpec, JobStatus

BROKER_ERRORS = (RedisConnectionError, RedisTimeoutError)
STREAM_ID = re.compile(STREAM_ID_PATTERN)
JOB_ID = re.compile(JOB_ID_PATTERN)
MAX_RESUMED_JOBS = 100
"""Jobs a reconnecting client socket may ask to follow again (``?jobs=``)."""

JOB_EVENTS = frozenset(
    {
        "job_submitted",
        "job_assigned",
        "job_status_changed",
        "update_job_progress",
        "complete_job",
        "job_failed",
        "job_cancelled",
    }
)
TOPICS: dict[str, frozenset[str]] = {
    "jobs": JOB_EVENTS,
    "workers": frozenset({"worker_connected", "worker_disconnected", "worker_status_changed"}),
    "machines": frozenset(
        {
            "machine_startup",
            "machine_startup_step",
            "machine_startup_complete",
            "machine_update",
            "machine_placement",
            "machine_shutdown",
        }
    ),
    "workflows": frozenset({"workflow_submitted", "workflow_completed", "workflow_failed"}),
}
"""A monitor topic is one of these names (a family of events) or a single event type."""
EVENT_TYPES = frozenset().union(*TOPICS.values())

DEFAULT_JOBS_PER_STATUS = 20
"""How many of the newest jobs of each status a ``full_state_snapshot`` lists by default."""

# Names the original clients used for job fields, accepted on ``submit_job``.
ORIGINAL_FIELD_NAMES = {"job_type": "service_required", "step_number": "current_step"}


def now_ms() -> int:
    return int(time.time() * 1000)


class Inbound(BaseModel):
    """Fields every inbound message may carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: float | None = Field(default=None, description="When the client sent it (ms).")
    id: str | int | None = Field(
        default=None,
        description="The client's own id for the message; replies added for the original's "
        "clients (`job_status`, `unsubscribed`, `heartbeat_ack`) echo it as `message_id`.",
    )
    source: str | None = Field(
        default=None, max_length=200, description="The original's sender tag (ignored)."
    )


class SubmitJob(Inbound):
    """A job's fields as in ``POST /api/jobs`` beside ``type``; ``message_id`` is its id."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Literal["submit_job"]
    message_id: JobId | None = Field(
        default=None, description="The job's id: resubmitting the same message is idempotent."
    )

    def job_spec(self, job_id: str) -> JobSpec:
        """The job, validated as ``POST /api/jobs`` validates it (raises ValidationError)."""
        fields = dict(self.model_extra or {})
        for original, name in ORIGINAL_FIELD_NAMES.items():
            if original in fields and name not in fields:
                fields[name] = fields.pop(original)
        return JobSpec.model_validate({**fields, "id": job_id})


class SubscribeProgress(Inbound):
    type: Literal["subscribe_progress"]
    job_id: JobId


class UnsubscribeProgress(Inbound):
    type: Literal["unsubscribe_progress"]
    job_id: JobId


class GetJobStatus(Inbound):
    type: Literal["get_job_status"]
    job_id: JobId


class Heartbeat(Inbound):
    """The original monitor's keepalive, answered with ``heartbeat_ack``; whatever else it
    carries (load figures, ids) is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["heartbeat"]


class CancelJob(Inbound):
    type: Literal["cancel_job"]
    job_id: JobId
    reason: str = Field(default="cancelled by client", min_length=1, max_length=500)


class DelegatedJobResult(Inbound):
    type: Literal["delegated_job_result"]
    job_id: JobId
    result: Any = None


class Subscribe(Inbound):
    type: Literal["subscribe"]
    topics: list[str] = Field(max_length=64, description="Topic families or event types.")


class RequestFullState(Inbound):
    type: Literal["request_full_state"]
    jobs_per_status: int = Field(default=DEFAULT_JOBS_PER_STATUS, ge=1, le=100)
    statuses: list[JobStatus] | None = Field(
        default=None,
        max_length=len(JobStatus),
        description="Statuses whose newest jobs to list (default: all); the counts of every "
        "status come in `queues` either way. Fewer statuses make a cheaper snapshot.",
    )


class MonitorConnect(Inbound):
    """The original monitor's greeting: answered with ``monitor_connected``."""

    type: Literal["monitor_connect"]
    request_full_state: bool = False


ClientCommand = Annotated[
    SubmitJob
    | SubscribeProgress
    | UnsubscribeProgress
    | GetJobStatus
    | CancelJob
    | DelegatedJobResult
    | Heartbeat,
    Field(discriminator="type"),
]
MonitorCommand = Annotated[
    Subscribe | RequestFullState | MonitorConnect | Heartbeat, Field(discriminator="type")
]
CLIENT_COMMANDS: TypeAdapter[ClientCommand] = TypeAdapter(ClientCommand)
MONITOR_COMMANDS: TypeAdapter[MonitorCommand] = TypeAdapter(MonitorCommand)


class ProtocolError(Exception):
    """A command the server refuses; sent to the client as an ``error`` message."""

    def __init__(self, code: str, message: str, detail: list[FieldProblem] | None = None) -> None:
        self.code = code
        self.message = message
        self.detail = detail or []
        super().__init__(message)

    @classmethod
    def from_validation(cls, error: ValidationError, what: str) -> ProtocolError:
        problems = [
            # An empty location is the message itself: no `type`, or one that is unknown.
            FieldProblem(field=".".join(str(p) for p in e["loc"]) or "type", problem=e["msg"])
            for e in error.errors(include_url=False)
        ]
        summary = "; ".join(f"{p.field}: {p.problem}" for p in problems[:5])
        return cls("invalid_message", f"{what} is invalid: {summary}", problems)


def parse_strict(text: str) -> Any:
    """JSON as the REST API reads it: ``NaN``, ``Infinity`` and overflowing numbers refused."""
    try:
        return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except json.JSONDecodeError as error:
        raise ProtocolError("invalid_json", f"the message is not strict JSON: {error}") from None
    except (ValueError, RecursionError) as error:  # a 5,000-digit number, or nested too deep
        problem = str(error) or "it nests too deep"
        raise ProtocolError("invalid_json", f"the message cannot be read: {problem}") from None


def as_protocol_error(error: Exception) -> ProtocolError:
    """The REST API's status for an error, as a WebSocket ``error`` code."""
    if isinstance(error, HTTPException):
        return ProtocolError(error_code(error.status_code), str(error.detail))
    for error_type, _status, code in EMP_ERROR_STATUS:
        if isinstance(error, error_type):
            return ProtocolError(code, str(error))
    if isinstance(error, BROKER_ERRORS):
        return ProtocolError(
            "broker_unavailable", f"the queue's Redis/Valkey server did not answer ({error}); retry"
        )
    if isinstance(error, ResponseError) and refusal(error) is not None:
        return ProtocolError("broker_unavailable", describe(error))
    raise error


def unknown_topics(topics: list[str]) -> list[str]:
    return [topic for topic in topics if topic not in TOPICS and topic not in EVENT_TYPES]


def expand_topics(topics: list[str]) -> frozenset[str]:
    """The event types a subscription to ``topics`` receives."""
    return frozenset().union(*(TOPICS.get(topic, frozenset({topic})) for topic in topics))


def error_message(error: ProtocolError, message_id: str | None = None) -> dict[str, Any]:
    # `error` holds the text, as in the original protocol; `code` is for programs.
    return {
        "type": "error",
        "timestamp": now_ms(),
        "error": error.message,
        "code": error.code,
        "detail": [problem.model_dump() for problem in error.detail],
        "message_id": message_id,
    }


def event_message(event: Event, **extra: Any) -> dict[str, Any]:
    """An event as the original sent it: flat, with ``event_id`` to resume after."""
    data = dict(event.data)
    timestamp = data.pop("ts", None)
    message: dict[str, Any] = {**data, **extra, "type": event.type, "event_id": event.id}
    message["timestamp"] = int(timestamp) if isinstance(timestamp, int | float) else now_ms()
    if event.job_id is not None:
        message["job_id"] = event.job_id
    return message


def reply(message_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": message_type, "timestamp": now_ms(), **fields}


class FullState(BaseModel):
    """The ``data`` of a ``full_state_snapshot``."""

    last_event_id: str = Field(description="Stream position the snapshot was taken at.")
    workers: list[WorkerOut]
    queues: list[QueueDepthOut]
    jobs: dict[JobStatus, list[JobOut]] = Field(description="The newest jobs of each status.")
    jobs_per_status: int
