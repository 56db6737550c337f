"""Job records: how a job is laid out in its Redis hash, both ways.

Only fields with a value are stored (memory per waiting job is a target);
JSON fields hold the client's data; numbers are decimal strings.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from emp_queue.core.keys import public_workflow_id, scoped_workflow_id
from emp_queue.core.matching import JobClass
from emp_queue.models import Job, JobError, JobSpec, JobStatus

DEFAULT_PRIORITY = 50

_INT_FIELDS = (
    "workflow_priority",
    "workflow_datetime",
    "current_step",
    "total_steps",
    "assigned_at",
    "started_at",
    "finished_at",
    "not_before",
)
_FLOAT_FIELDS = ("timeout_s", "queue_ttl_s", "progress")
_STR_FIELDS = ("customer_id", "webhook", "traceparent", "worker_id", "message")
_OPTIONAL_SPEC_FIELDS = (
    "workflow_priority",
    "workflow_datetime",
    "current_step",
    "total_steps",
    "timeout_s",
    "queue_ttl_s",
    "customer_id",
    "webhook",
    "traceparent",
)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def spec_fields(spec: JobSpec) -> dict[str, str]:
    """The record fields Python supplies at submit; Lua adds class, seq, score, status, times."""
    fields: dict[str, str] = {"max_attempts": str(spec.max_attempts)}
    if spec.priority != DEFAULT_PRIORITY:
        fields["priority"] = str(spec.priority)
    if spec.payload:
        fields["payload"] = _dumps(spec.payload)
    if spec.ctx:
        fields["ctx"] = _dumps(spec.ctx)
    if spec.depends_on:
        fields["depends_on"] = _dumps(spec.depends_on)
    for name in _OPTIONAL_SPEC_FIELDS:
        value = getattr(spec, name)
        if value is not None:
            fields[name] = str(value)
    if spec.workflow_id is not None:
        # The record holds the scoped name: every script keys the workflow by it.
        fields["workflow_id"] = scoped_workflow_id(spec.customer_id, spec.workflow_id)
    return fields


def submission(job_id: str, spec: JobSpec, job_class: JobClass) -> dict[str, Any]:
    """One element of ``submit.lua``'s ARGV[4] array."""
    entry: dict[str, Any] = {
        "id": job_id,
        "class": job_class.class_id,
        "desc": job_class.descriptor_json,
        "service": spec.service_required,
        "priority": spec.effective_priority,
        "fields": spec_fields(spec),
    }
    if spec.workflow_datetime is not None:
        entry["workflow_datetime"] = spec.workflow_datetime
    if spec.queue_ttl_s is not None:
        entry["queue_ttl_ms"] = round(spec.queue_ttl_s * 1000)
    if spec.run_at is not None:
        entry["run_at"] = spec.run_at
    if spec.delay_s is not None:
        entry["delay_ms"] = round(spec.delay_s * 1000)
    if spec.depends_on:
        entry["depends_on"] = spec.depends_on
    if spec.after_previous_step and spec.current_step:
        entry["after_step"] = spec.current_step - 1
    return entry


def _text(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def flat_to_map(flat: list[Any]) -> dict[str, str]:
    """A Lua HGETALL reply (alternating names and values) as a dict."""
    return _text(dict(zip(flat[::2], flat[1::2], strict=True)))


def requirements_of(descriptor_json: str | bytes) -> dict[str, Any]:
    """The requirements held in a class descriptor."""
    requirements: dict[str, Any] = json.loads(descriptor_json).get("req", {})
    return requirements


def _error(raw: str) -> JobError:
    return JobError.model_validate_json(raw)


def _flag(raw: str) -> bool:
    return raw == "1"


# Record field -> (Job attribute, conversion); fields not listed (class, score, oseq,
# avoid) are the queue's own bookkeeping.
_DECODERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "service": ("service_required", str),
    "priority": ("priority", int),
    "payload": ("payload", json.loads),
    "ctx": ("ctx", json.loads),
    "depends_on": ("depends_on", json.loads),
    "max_attempts": ("max_attempts", int),
    "status": ("status", JobStatus),
    "attempt": ("attempt", int),
    "failures": ("failures", int),
    "lost_leases": ("lost_leases", int),
    "seq": ("seq", int),
    "created_at": ("created_at", int),
    "dead": ("dead_lettered", _flag),
    "result": ("result", json.loads),
    "error": ("error", _error),
    **{name: (name, int) for name in _INT_FIELDS},
    **{name: (name, float) for name in _FLOAT_FIELDS},
    **{name: (name, str) for name in _STR_FIELDS},
    "workflow_id": ("workflow_id", public_workflow_id),
}


def decode_job(job_id: str, raw: Mapping[Any, Any], requirements: Mapping[str, Any]) -> Job:
    """A job from its record (written by our scripts from a validated ``JobSpec``).

    This runs for every claimed job, hence one pass over the record.
    """
    record = raw if all(isinstance(k, str) for k in raw) else _text(raw)
    values: dict[str, Any] = {
        "id": job_id,
        "priority": DEFAULT_PRIORITY,
        "payload": {},
        "requirements": copy.deepcopy(dict(requirements)) if requirements else {},
    }
    for name, value in record.items():
        decoder = _DECODERS.get(name)
        if decoder is not None and value != "":
            attribute, convert = decoder
            values[attribute] = convert(value)
    return Job(**values)
