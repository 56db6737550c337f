"""API JSON → the project's data types (the SDK returns the same ``Job`` the core does)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import httpx

from emp_queue.client.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
)
from emp_queue.models import Job, JobError, JobStatus

_JOB_FIELDS = frozenset(field.name for field in dataclasses.fields(Job))
_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
}


def job_from_json(data: Mapping[str, Any]) -> Job:
    values = {name: value for name, value in data.items() if name in _JOB_FIELDS}
    values["status"] = JobStatus(values["status"])
    if values.get("error") is not None:
        values["error"] = JobError.model_validate(values["error"])
    return Job(**values)


def raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error", "error"))
    message = str(body.get("message") or response.reason_phrase)
    if response.status_code == 429:
        retry_after = float(response.headers.get("retry-after", "1"))
        raise RateLimitedError(code, message, retry_after)
    if response.status_code >= 500:
        raise ServerError(response.status_code, code, message)
    error_class = _BY_STATUS.get(response.status_code, ApiError)
    raise error_class(response.status_code, code, message, body.get("detail"))
