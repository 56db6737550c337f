"""The Python SDK: ``AsyncClient`` (asyncio) and ``Client`` (blocking) over the HTTP API."""

from emp_queue.client.async_client import AsyncClient, JobHandle, Page
from emp_queue.client.errors import (
    ApiError,
    ApiUnreachableError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    WaitTimeoutError,
)
from emp_queue.client.sync_client import Client

__all__ = [
    "ApiError",
    "ApiUnreachableError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "InvalidRequestError",
    "JobHandle",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "WaitTimeoutError",
]
