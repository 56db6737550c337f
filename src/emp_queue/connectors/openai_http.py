"""HTTP to an OpenAI-compatible server: auth headers, 429 retries in place, failure classes.

Failure classes (see ``docs/connectors.md``):

* 429 → wait ``retry-after-ms`` / ``retry-after`` (or 1, 2, 4... s) and retry on this worker,
  at most ``max_429_retries`` times and never longer than ``max_retry_after_s`` per wait; then,
  or at once for ``insufficient_quota``, a service fault (the queue's backoff takes over).
* 401/403 → service fault: the key, organization or region of *this worker* is refused, and
  another worker may be configured with a valid one. The job itself is not to blame.
* 404 with an API error body (an unknown model) → job fault; a bare 404 (``{"detail": "Not
  Found"}``, HTML) means the route is missing — a wrong ``EMP_OPENAI_BASE_URL`` or a server
  without that API — so a service fault.
* Other 4xx → job fault; 408/409/425, 5xx and connection failures → service fault —
  except a 5xx whose body is a request validation error (llama-cpp-python answers a parameter
  of the wrong type with 500 and pydantic's complaint): the request is to blame, a job fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from emp_queue.connectors.base import job_fault, service_fault
from emp_queue.connectors.http import (
    RETRYABLE_STATUS,
    error_message,
    retry_after_s,
    transport_fault,
)
from emp_queue.errors import JobFailedError
from emp_queue.http_tls import tls_context

log = structlog.get_logger(__name__)

SERVICE = "openai"
USER_AGENT = "emp-job-queue"
REQUEST_VALIDATION = re.compile(
    r"validation error|'loc': \('body'|\"loc\": \[\"body\"|Input should be", re.IGNORECASE
)
"""What a 5xx body says when a server reports its own request validation as an error."""


def _error_body(response: httpx.Response) -> dict[str, Any] | None:
    """The OpenAI-style error object of an answer (``{"error": {...}}`` or vLLM's flat one)."""
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):
        return dict(body["error"])
    if isinstance(body.get("error"), str) or "message" in body:
        return {"message": body.get("error") or body.get("message"), "code": body.get("code")}
    return None


def openai_fault(response: httpx.Response) -> JobFailedError:
    """The failure a non-2xx answer stands for (the rules are in the module docstring)."""
    status = response.status_code
    error = _error_body(response)
    code = error.get("code") if error else None
    message = f"openai-compatible server answered {status}: {error_message(response)}"
    details: dict[str, object] = {"status": status, "path": response.url.path}
    if code:
        details["code"] = code
    if status in (401, 403):
        return service_fault(
            f"{message} — this worker's EMP_OPENAI_API_KEY / EMP_OPENAI_ORGANIZATION is refused; "
            "the job is retried on another worker",
            **details,
        )
    if status == 404 and error is None:
        return service_fault(
            f"{message} — {response.url.path} does not exist on that server; check "
            "EMP_OPENAI_BASE_URL (it usually ends with /v1) and that the server offers this API",
            **details,
        )
    if (delay := retry_after_s(response)) is not None:
        details["retry_after_s"] = delay
    if 400 <= status < 500 and status not in RETRYABLE_STATUS:
        return job_fault(message, **details)
    if status >= 500 and _blames_request(error):
        return job_fault(
            f"{message} — the server says the request itself is invalid; fix the payload",
            **details,
        )
    return service_fault(message, **details)


def _blames_request(error: dict[str, Any] | None) -> bool:
    if error is None:
        return False
    return bool(REQUEST_VALIDATION.search(str(error.get("message") or "")))


def stream_error(error: Any) -> JobFailedError:
    """An ``{"error": ...}`` object sent inside a 200 stream (vLLM and proxies do this)."""
    body = error if isinstance(error, dict) else {"message": str(error)}
    message = f"openai-compatible server failed mid-stream: {body.get('message')}"
    if body.get("type") == "invalid_request_error":
        return job_fault(message, code=body.get("code"))
    return service_fault(message, code=body.get("code"))


class OpenAIHttp:
    """One worker's clients: the API (with credentials) and downloads (without them)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr | None,
        organization: str | None,
        project: str | None,
        timeout: httpx.Timeout,
        max_429_retries: int,
        max_retry_after_s: float,
    ) -> None:
        headers = {"User-Agent": USER_AGENT}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        if organization:
            headers["OpenAI-Organization"] = organization
        if project:
            headers["OpenAI-Project"] = project
        self.api = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, verify=tls_context()
        )
        # Image URLs point at a CDN: the API key must never be sent there.
        self.downloads = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            follow_redirects=True,
            verify=tls_context(),
        )
        self.max_429_retries = max_429_retries
        self.max_retry_after_s = max_retry_after_s

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.downloads.aclose()

    def _retry_delay(self, response: httpx.Response, retries: int) -> float | None:
        """How long to wait before retrying a 429 in place; ``None``: give up now."""
        error = _error_body(response) or {}
        if retries >= self.max_429_retries or error.get("code") == "insufficient_quota":
            return None
        delay = retry_after_s(response)
        precise = response.headers.get("retry-after-ms")
        if precise is not None:
            with contextlib.suppress(ValueError):
                delay = max(0.0, float(precise) / 1000)
        if delay is None:
            delay = float(2**retries)
        return delay if delay <= self.max_retry_after_s else None

    async def send(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        """A successful answer (still open when ``stream``); 429s retried, the rest raised."""
        for retries in range(self.max_429_retries + 1):
            request = self.api.build_request(method, path, json=body)
            try:
                response = await self.api.send(request, stream=stream)
                if response.is_success:
                    return response
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.TransportError as error:
                raise transport_fault(error, SERVICE) from error
            delay = self._retry_delay(response, retries) if response.status_code == 429 else None
            if delay is None:
                break
            log.warning("openai_rate_limited", path=path, retry=retries + 1, delay_s=delay)
            await asyncio.sleep(delay)
        raise openai_fault(response)

    async def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.send(method, path, body)
        try:
            return response.json()
        except ValueError as error:
            raise service_fault(
                f"{method} {path} answered {response.status_code} with a body that is not JSON"
            ) from error

    @contextlib.asynccontextmanager
    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """POST ``body`` and yield the open, successful response; closed on exit or cancel."""
        response = await self.send("POST", path, body, stream=True)
        try:
            yield response
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error
        finally:
            await response.aclose()

    async def download(self, url: str) -> tuple[bytes, str]:
        """The bytes and content type behind an output URL the service returned."""
        try:
            response = await self.downloads.get(url)
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error
        if not response.is_success:
            raise service_fault(
                f"downloading the output {url} failed: HTTP {response.status_code}",
                status=response.status_code,
            )
        return response.content, response.headers.get("content-type", "application/octet-stream")


def decode_event(data: str) -> dict[str, Any]:
    """One SSE ``data:`` payload as a JSON object; anything else is the server's fault."""
    try:
        value = json.loads(data)
    except ValueError as error:
        raise service_fault(f"the stream sent data that is not JSON: {data[:200]!r}") from error
    if not isinstance(value, dict):
        raise service_fault(f"the stream sent JSON that is not an object: {data[:200]!r}")
    return value
