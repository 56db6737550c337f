"""``rest-sync``: one HTTP request described by the job, its answer as the result.

The payload (``rest-async`` in :mod:`emp_queue.connectors.rest_async` adds ``poll`` and
``cancel``)::

    {"method": "POST",                          # default POST
     "url": "https://api.example.com/v1/x"      # or "path": "/v1/x" (joined to EMP_REST_BASE_URL)
     "query": {"a": 1}, "headers": {...},
     "json": {...} | "body": "raw text"       # or "body_upload": "<ref>", a file the job's
                                              # customer uploaded (POST /api/uploads), sent
                                              # with its Content-Type unless headers set one
     "expect": "auto" | "json" | "text" | "binary",
     "timeout_s": 30}

2xx → ``{"status_code", "content_type", "json" | "text" | "output"}``: small JSON and text
inline, binary and large bodies stored as an asset (``output``). 4xx → job fault (except
408/409/425/429, which say "not now"); 5xx and transport errors → service fault.

Only hosts in ``EMP_REST_ALLOWED_HOSTS`` (plus the host of ``EMP_REST_BASE_URL``) are
reachable, redirects included; see :mod:`emp_queue.connectors.rest_hosts`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from emp_queue.connectors.base import (
    Connector,
    ConnectorConfig,
    Discovery,
    RunningJob,
    job_fault,
    validation_problems,
)
from emp_queue.connectors.http import response_fault, transport_fault
from emp_queue.connectors.rest_hosts import HostAllowlist
from emp_queue.http_tls import tls_context
from emp_queue.models import ServiceModels
from emp_queue.storage.uploads import UploadRef

log = structlog.get_logger(__name__)

SERVICE = "rest"
FORBIDDEN_JOB_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
"""A job may not set these: ``Host`` would route past the allowlist to another virtual host."""


class RestConfig(ConnectorConfig):
    """Shared by ``rest-sync`` and ``rest-async``."""

    model_config = SettingsConfigDict(env_prefix="EMP_REST_", extra="forbid", frozen=True)

    base_url: str | None = None
    """Where ``path`` payloads go; its host is always allowed."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Other reachable hosts (see rest_hosts); with neither this nor base_url, start() fails."""
    default_headers: dict[str, str] = Field(default_factory=dict)
    auth_token: SecretStr | None = None
    """Sent as ``Authorization: Bearer …`` to the base_url's host only, never elsewhere."""
    models: list[str] = Field(default_factory=list)
    """Names jobs may require as models (a REST service has none of its own to report)."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    timeout_s: float | None = Field(default=60.0, gt=0)
    """Per HTTP request (a job may lower or raise it with ``timeout_s``)."""
    max_inline_bytes: int = Field(default=32 * 1024, ge=0)
    """JSON or text answers longer than this are stored as an asset."""
    max_response_bytes: int = Field(default=256 * 1024 * 1024, gt=0)


class RestRequest(BaseModel):
    """One HTTP request, as a job describes it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    url: str | None = None
    path: str | None = Field(default=None, pattern=r"^/([^/]|$)")
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    body_upload: str | None = Field(default=None, max_length=512)
    expect: Literal["auto", "json", "text", "binary"] = "auto"
    timeout_s: float | None = Field(default=None, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _upper_method(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("method"), str):
            return {**data, "method": data["method"].upper()}
        return data

    @model_validator(mode="after")
    def _one_target_one_body(self) -> RestRequest:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of 'url' or 'path'")
        bodies = ("json_body" in self.model_fields_set, self.body is not None)
        if sum((*bodies, self.body_upload is not None)) > 1:
            raise ValueError("give at most one of 'json', 'body' or 'body_upload'")
        bad = FORBIDDEN_JOB_HEADERS & {name.lower() for name in self.headers}
        if bad:
            raise ValueError(f"headers may not set {', '.join(sorted(bad))}")
        return self


def payload_error(kind: str, error: ValidationError) -> Exception:
    return job_fault(f"invalid {kind} payload: {validation_problems(error)}")


class RestConnectorBase(Connector):
    """The HTTP client, the host guard and request sending both REST connectors share."""

    Config = RestConfig
    config: RestConfig

    def __init__(self, config: RestConfig | None = None) -> None:
        super().__init__(config)
        self._client: httpx.AsyncClient | None = None
        self._hosts: HostAllowlist | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        self._hosts = HostAllowlist(self.config.allowed_hosts, self.config.base_url)
        if self._hosts.allows_everything:
            log.warning("rest_allows_every_host", kind=self.kind)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
            headers=self.config.default_headers,
            follow_redirects=True,
            max_redirects=5,
            event_hooks={"request": [self._guard]},
            verify=tls_context(),
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def discover(self) -> Discovery:
        models = list(self.config.models)
        return Discovery(
            models=ServiceModels(installed=models, loaded=models),
            details={"base_url": self.config.base_url},
        )

    async def _guard(self, request: httpx.Request) -> None:
        """Runs before every request httpx sends, redirects included."""
        if self._hosts is None:
            raise RuntimeError(f"{type(self).__name__}.start() must be called before use")
        self._hosts.check(request.url)
        token = self.config.auth_token
        ours = token is not None and (
            request.headers.get("authorization") == f"Bearer {token.get_secret_value()}"
        )
        if ours and not self._same_origin_as_base(request.url):
            # A redirect away from the base URL must not carry our token (a job's own is fine).
            del request.headers["authorization"]

    def _same_origin_as_base(self, url: httpx.URL) -> bool:
        if self.config.base_url is None:
            return False
        base = httpx.URL(self.config.base_url)
        return (base.scheme, base.host, base.port) == (url.scheme, url.host, url.port)

    def resolve(self, spec: RestRequest) -> httpx.URL:
        if spec.url is not None:
            try:
                return httpx.URL(spec.url)
            except httpx.InvalidURL as error:
                raise job_fault(f"'url' {spec.url!r} is not a valid URL: {error}") from error
        if self.config.base_url is None:
            raise job_fault(
                f"payload gives 'path' {spec.path!r} but this worker has no EMP_REST_BASE_URL; "
                "give a full 'url' instead"
            )
        return httpx.URL(self.config.base_url.rstrip("/") + str(spec.path))

    async def build_with_body(self, job: RunningJob, spec: RestRequest) -> httpx.Request:
        """The request for ``spec``, with the uploaded file its ``body_upload`` names."""
        if spec.body_upload is None:
            return self.build(spec)
        upload = UploadRef.parse(spec.body_upload)
        data = await job.read_upload(spec.body_upload)
        if not any(name.lower() == "content-type" for name in spec.headers):
            spec = spec.model_copy(
                update={"headers": {**spec.headers, "Content-Type": upload.content_type}}
            )
        return self.build(spec, content=data)

    def build(
        self,
        spec: RestRequest,
        url: httpx.URL | None = None,
        method: str | None = None,
        content: bytes | None = None,
    ) -> httpx.Request:
        """The request for ``spec`` (or its method/headers against another ``url``);
        ``content``: the bytes of its ``body_upload``."""
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.start() must be called before use")
        target = url if url is not None else self.resolve(spec)
        headers = dict(spec.headers)
        if self.config.auth_token is not None and self._same_origin_as_base(target):
            headers.setdefault(
                "Authorization", f"Bearer {self.config.auth_token.get_secret_value()}"
            )
        timeout = httpx.Timeout(
            spec.timeout_s or self.config.timeout_s, connect=self.config.connect_timeout_s
        )
        extensions = {"timeout": timeout.as_dict()}
        if url is not None:
            return self._client.build_request(
                method or "GET", target, headers=headers, extensions=extensions
            )
        body: dict[str, Any] = {}
        if "json_body" in spec.model_fields_set:
            body["json"] = spec.json_body
        elif spec.body is not None:
            body["content"] = spec.body.encode()
        elif content is not None:
            body["content"] = content
        return self._client.build_request(
            spec.method,
            target,
            params=spec.query,
            headers=headers,
            extensions=extensions,
            **body,
        )

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read its (decoded) body, up to ``max_response_bytes``.

        Raises a service fault for transport errors and the host guard's job fault.
        """
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.start() must be called before use")
        limit = self.config.max_response_bytes
        try:
            response = await self._client.send(request, stream=True)
            try:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise job_fault(
                            f"{request.url} answered more than EMP_REST_MAX_RESPONSE_BYTES "
                            f"({limit} bytes)"
                        )
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx.TransportError as error:
            raise transport_fault(error, f"{SERVICE} {request.url.host}") from error
        except httpx.TooManyRedirects as error:
            raise job_fault(f"{request.url} redirected more than 5 times") from error
        # A read response of our own: its body is already decoded, so drop the encoding.
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=response.request,
        )


def decode_json(body: bytes, where: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise job_fault(f"{where} answered a body that is not JSON: {body[:200]!r}") from error


async def inline_or_store(
    job: RunningJob, value: Any, limit: int, content_type: str = "application/json"
) -> dict[str, Any]:
    """``{"json": value}`` when small enough, else the value stored as a JSON asset."""
    encoded = json.dumps(value).encode()
    if len(encoded) <= limit:
        return {"json": value}
    asset = await job.store(encoded, content_type=content_type)
    return {"output": asset.as_result()}


class RestSyncConnector(RestConnectorBase):
    kind = "rest-sync"

    async def run(self, job: RunningJob) -> dict[str, Any]:
        try:
            spec = RestRequest.model_validate(job.payload)
        except ValidationError as error:
            raise payload_error(self.kind, error) from error
        request = await self.build_with_body(job, spec)
        await job.progress(0.0, f"{spec.method} {request.url.host}")
        response = await self.send(request)
        if not response.is_success:
            raise response_fault(response, f"{SERVICE} {request.url.host}")
        result = await self._result(job, spec, response, response.content)
        await job.progress(1.0, f"answered {response.status_code}")
        return result

    async def _result(
        self, job: RunningJob, spec: RestRequest, response: httpx.Response, body: bytes
    ) -> dict[str, Any]:
        content_type = response.headers.get("content-type", "application/octet-stream")
        result: dict[str, Any] = {"status_code": response.status_code, "content_type": content_type}
        expect = spec.expect
        if expect == "auto":
            media = content_type.split(";")[0].strip().lower()
            if not body:
                return result
            if media == "application/json" or media.endswith("+json"):
                expect = "json"
            elif media.startswith("text/") or media.endswith(("/xml", "+xml")):
                expect = "text"
            else:
                expect = "binary"
        limit = self.config.max_inline_bytes
        if expect == "json":
            return {
                **result,
                **await inline_or_store(job, decode_json(body, str(response.url)), limit),
            }
        if expect == "text" and len(body) <= limit:
            return {
                **result,
                "text": body.decode(response.charset_encoding or "utf-8", errors="replace"),
            }
        asset = await job.store(body, content_type=content_type)
        return {**result, "output": asset.as_result()}
