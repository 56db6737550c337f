"""Turning HTTP outcomes into failure classes, the same way for every HTTP connector."""

from __future__ import annotations

from typing import Any

import httpx

from emp_queue.connectors.base import job_fault, service_fault
from emp_queue.errors import JobFailedError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""4xx answers that say "not now" rather than "never": retried like a 5xx."""


def retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta form only), if the service sent one."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_message(response: httpx.Response) -> str:
    """The service's own error message when its body carries one, else the status line.

    A streamed response must have been read (``await response.aread()``) first.
    """
    try:
        body: Any = response.json()
    except (ValueError, httpx.ResponseNotRead):
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error:
            return str(error)[:2000]
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        text = ""
    return text[:2000] or f"HTTP {response.status_code} {response.reason_phrase}"


def response_fault(response: httpx.Response, service: str) -> JobFailedError:
    """The failure a non-2xx answer stands for: 4xx is the job's fault, the rest the service's."""
    message = f"{service} answered {response.status_code}: {error_message(response)}"
    details: dict[str, object] = {"status": response.status_code}
    if (delay := retry_after_s(response)) is not None:
        details["retry_after_s"] = delay
    if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
        return job_fault(message, **details)
    return service_fault(message, **details)


def transport_fault(error: httpx.TransportError, service: str) -> JobFailedError:
    """A connection refused, reset or timed out: the service's fault, retried elsewhere."""
    kind = type(error).__name__
    return service_fault(f"{service} unreachable ({kind}): {error}", transport_error=kind)


def raise_for_response(response: httpx.Response, service: str) -> None:
    """Raise the matching :class:`JobFailedError` unless ``response`` is a success."""
    if not response.is_success:
        raise response_fault(response, service)
