"""Errors the SDK raises: one branch of the project's error tree, by HTTP outcome."""

from __future__ import annotations

from typing import Any

from emp_queue.errors import EmpError


class ApiError(EmpError):
    """The API answered with an error; ``code`` and ``message`` come from its error body."""

    def __init__(
        self, status_code: int, code: str, message: str, detail: list[dict[str, Any]] | None = None
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.detail = detail or []
        super().__init__(f"{status_code} {code}: {message}")


class AuthenticationError(ApiError):
    """401: no key or an unknown/revoked key; set EMP_API_KEY (``emp keys create``)."""


class PermissionDeniedError(ApiError):
    """403: the key's role may not do this; use a key with the right role."""


class NotFoundError(ApiError):
    """404: no such job (or it belongs to another customer, or it expired)."""


class ConflictError(ApiError):
    """409: the job's state does not allow this (e.g. cancelling a finished job)."""


class InvalidRequestError(ApiError):
    """400/413/415/422: the request was refused; ``detail`` names each offending field."""


class RateLimitedError(ApiError):
    """429: too many requests for this key; retry after ``retry_after_s``."""

    def __init__(self, code: str, message: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(429, code, message)


class ServerError(ApiError):
    """5xx: the API failed; the request may be retried."""


class ApiUnreachableError(EmpError):
    """The API could not be reached at all; check EMP_API_URL and that ``emp api`` runs."""


class WaitTimeoutError(EmpError):
    """The job did not finish within the time ``wait()`` was given; it keeps running."""
