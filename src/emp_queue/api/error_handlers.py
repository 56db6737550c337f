"""Every failure becomes a JSON :class:`ErrorBody`; client input never yields a 5xx.

Validation errors name each field and its problem; the core's errors map to the status a
client can act on (bad job 422, unknown job 404, wrong state 409); an unreachable broker, or
one that refuses writes (out of memory, MISCONF, READONLY: ``core/refusals.py``), is 503 so
load balancers and clients retry instead of blaming the request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from emp_queue.api.answer_deadline import broker_unavailable_body, submitted_ids, unanswered
from emp_queue.api.schemas import ErrorBody, FieldProblem
from emp_queue.core.refusals import describe, refusal
from emp_queue.errors import (
    BrokerError,
    CustomerCapError,
    EmpError,
    InvalidJobError,
    InvalidQueryError,
    InvalidTransitionError,
    JobNotFoundError,
    MachineNotFoundError,
    QueueDrainingError,
    UnknownRequirementError,
    UnknownServiceError,
)

log = structlog.get_logger(__name__)

# Most specific first: UnknownRequirementError is an InvalidJobError.
EMP_ERROR_STATUS: tuple[tuple[type[EmpError], int, str], ...] = (
    (UnknownRequirementError, 422, "unknown_requirement"),
    (CustomerCapError, 429, "customer_cap"),
    (QueueDrainingError, 409, "queue_draining"),
    (InvalidQueryError, 422, "invalid_query"),
    (UnknownServiceError, 422, "unknown_service"),
    (InvalidJobError, 422, "invalid_job"),
    (JobNotFoundError, 404, "not_found"),
    (MachineNotFoundError, 404, "not_found"),
    (InvalidTransitionError, 409, "invalid_transition"),
    (BrokerError, 503, "broker_unavailable"),
)


def error_response(
    status_code: int,
    error: str,
    message: str,
    detail: Sequence[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, detail=list(detail))
    return JSONResponse(body.model_dump(mode="json"), status_code, headers=headers)


# The phrase of 413 changed between Python versions; the code must not.
FIXED_CODES = {413: "content_too_large"}


def error_code(status_code: int) -> str:
    if status_code in FIXED_CODES:
        return FIXED_CODES[status_code]
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def field_name(location: Sequence[Any]) -> str:
    return ".".join(str(part) for part in location) or "request"


def problem_text(error: dict[str, Any]) -> str:
    message = str(error.get("msg", ""))
    cause = (error.get("ctx") or {}).get("error")
    return f"{message}: {cause}" if error.get("type") == "json_invalid" and cause else message


async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        FieldProblem(field=field_name(error.get("loc", ())), problem=problem_text(error))
        for error in exc.errors()
    ]
    summary = "; ".join(f"{p.field}: {p.problem}" for p in problems[:5])
    return error_response(422, "invalid_request", f"the request is invalid: {summary}", problems)


def allowed_methods(request: Request, fallback: str) -> str:
    """Every method the OpenAPI document gives this path: Starlette's 405 names only the
    first route's, and a path such as ``/api/jobs`` has one route per method."""
    path = request.url.path
    paths = request.app.openapi()["paths"]
    # Literal paths first: /api/jobs/cancel is not /api/jobs/{job_id}.
    for template in sorted(paths, key=lambda t: t.count("{")):
        operations = paths[template]
        pattern = "[^/]+".join(re.escape(part) for part in re.split(r"\{[^}]+\}", template))
        if re.fullmatch(pattern, path):
            return ", ".join(sorted(method.upper() for method in operations))
    return fallback


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers = headers or {}
        headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
    return error_response(
        exc.status_code, error_code(exc.status_code), str(exc.detail), (), headers
    )


async def on_emp_error(request: Request, exc: Exception) -> JSONResponse:
    for error_type, status_code, code in EMP_ERROR_STATUS:
        if isinstance(exc, error_type):
            return error_response(status_code, code, str(exc))
    log.error("api_unexpected_error", path=request.url.path, error=repr(exc))
    return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")


async def on_broker_unreachable(request: Request, exc: Exception) -> JSONResponse:
    job_ids = submitted_ids(request.scope)
    log.warning(
        "api_broker_unreachable", path=request.url.path, error=str(exc), job_ids=job_ids or None
    )
    return unavailable(broker_unavailable_body(unanswered(str(exc)), job_ids))


async def on_broker_error(request: Request, exc: Exception) -> JSONResponse:
    """An error reply: a refusal the operator must fix (out of memory, MISCONF, READONLY...)
    is a 503 like an unreachable broker; any other reply is this server's fault, a 500."""
    assert isinstance(exc, ResponseError)
    if refusal(exc) is None:
        log.error("api_broker_error", path=request.url.path, error=str(exc))
        return error_response(500, "internal_error", describe(exc))
    job_ids = submitted_ids(request.scope)
    log.warning(
        "api_broker_refused", path=request.url.path, error=str(exc), job_ids=job_ids or None
    )
    return unavailable(broker_unavailable_body(describe(exc), job_ids))


def unavailable(body: ErrorBody) -> JSONResponse:
    return JSONResponse(
        body.model_dump(mode="json"),
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(EmpError, on_emp_error)
    app.add_exception_handler(RedisConnectionError, on_broker_unreachable)
    app.add_exception_handler(RedisTimeoutError, on_broker_unreachable)
    app.add_exception_handler(ResponseError, on_broker_error)


def _documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": HTTPStatus(code).phrase} for code in codes}


PUBLIC_ERRORS = _documented(400, 413, 422, 503)
"""Responses every route may give, key or not."""
KEYED_ERRORS = _documented(400, 401, 403, 413, 422, 429, 503)
"""Responses every route that needs a key may give."""
JOB_ERRORS = _documented(400, 401, 403, 404, 409, 413, 422, 429, 503)
"""Responses of routes that name a job."""
UPLOAD_ERRORS = _documented(400, 401, 403, 413, 415, 422, 429, 503)
"""Responses of the file upload (415: a type uploads do not take)."""
MACHINE_ERRORS = _documented(400, 401, 403, 404, 413, 422, 429, 503)
"""Responses of routes that name a machine."""
STREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": HTTPStatus(code).phrase,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code in (400, 401, 403, 404, 413, 422, 429, 503)
}
"""Errors of a streaming route: JSON, although its success is another media type."""
