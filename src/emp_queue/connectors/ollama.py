"""``ollama``: generate, chat and embed on a local Ollama daemon, streamed as NDJSON.

Payload: ``{"operation": "generate" | "chat" | "embed", "model": ..., <the rest of Ollama's
request body>}``; without ``operation`` a payload with ``messages`` is a chat, any other a
generate. Generations always stream (a ``stream`` field in the payload is overridden) so that
progress can be reported and a cancel can close the connection, Ollama's only way to stop one.

Failure classes:

* HTTP 400 (bad request) → job fault; 404 "model not found" → job fault, unless
  ``EMP_OLLAMA_PULL_MISSING=true``, then the model is pulled (with progress) and the job runs;
  a 404 that is not Ollama's JSON error means the URL is not an Ollama → service fault.
* 429/500/503 (queue full, server error) and connection failures → service fault.
* An ``{"error": ...}`` line after HTTP 200 (Ollama reports runner crashes that way) → service
  fault, except messages that are clearly about the input (see :data:`INPUT_ERROR_MARKERS`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from emp_queue.connectors.base import (
    Connector,
    ConnectorConfig,
    Discovery,
    RunningJob,
    ServiceUnavailableError,
    parse_payload,
    service_fault,
)
from emp_queue.connectors.http import raise_for_response, response_fault, transport_fault
from emp_queue.connectors.ollama_stream import (
    GenerationReply,
    PullProgress,
    decode_line,
    ndjson,
)
from emp_queue.connectors.outputs import INLINE_MAX_BYTES, place
from emp_queue.connectors.progress import ProgressGauge, token_fraction
from emp_queue.errors import JobFailedError
from emp_queue.http_tls import tls_context
from emp_queue.models import FailureClass, ServiceModels

log = structlog.get_logger(__name__)

SERVICE = "ollama"
PULL_SHARE = 0.5
"""Part of the progress bar a model download takes when ``pull_missing`` needs one."""


class OllamaConfig(ConnectorConfig):
    model_config = SettingsConfigDict(env_prefix="EMP_OLLAMA_", extra="forbid", frozen=True)

    url: str = Field(default="http://127.0.0.1:11434", pattern=r"^https?://")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float | None = Field(default=600.0, gt=0)
    """Longest silence between two streamed lines; the first waits for the model to load.
    ``None``: no limit (the job's own timeout still applies)."""
    pull_missing: bool = False
    """Pull a model the daemon lacks instead of failing the job."""
    inline_max_bytes: int = Field(default=INLINE_MAX_BYTES, ge=0)
    """Embeddings or text larger than this go to the asset store."""


class OllamaPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    operation: Literal["generate", "chat", "embed"] | None = None
    model: str = Field(min_length=1)


class ModelNotFoundError(JobFailedError):
    """Ollama does not have the model: pull it on the machine, or set
    ``EMP_OLLAMA_PULL_MISSING=true`` to let the worker pull it."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(
            f"ollama has no model {model!r} ({message}); pull it on the machine or set "
            "EMP_OLLAMA_PULL_MISSING=true",
            failure_class=FailureClass.JOB_FAULT,
            details={"model": model, "status": 404},
        )
        self.model = model


class OllamaConnector(Connector):
    kind = "ollama"
    Config = OllamaConfig
    config: OllamaConfig

    def __init__(self, config: OllamaConfig | None = None) -> None:
        super().__init__(config)
        self._http: httpx.AsyncClient | None = None
        self._pulls: dict[str, asyncio.Lock] = {}

    async def start(self) -> None:
        await self._get("/api/version")

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            timeout = httpx.Timeout(
                self.config.read_timeout_s, connect=self.config.connect_timeout_s
            )
            self._http = httpx.AsyncClient(
                base_url=self.config.url, timeout=timeout, verify=tls_context()
            )
        return self._http

    async def _get(self, path: str) -> Any:
        try:
            response = await self._client().get(path)
        except httpx.TransportError as error:
            raise ServiceUnavailableError(
                f"ollama at {self.config.url} is unreachable ({type(error).__name__}: {error}); "
                "is the daemon running and EMP_OLLAMA_URL right?"
            ) from error
        raise_for_response(response, SERVICE)
        return response.json()

    async def discover(self) -> Discovery:
        tags, running, version = (
            await self._get("/api/tags"),
            await self._get("/api/ps"),
            await self._get("/api/version"),
        )
        loaded = running.get("models") or []
        installed = tags.get("models") or []
        sizes = {m["name"]: int(m["size"]) for m in [*installed, *loaded] if m.get("size")}
        return Discovery(
            models=ServiceModels(
                installed=[m["name"] for m in installed],
                loaded=[m["name"] for m in loaded],
                sizes=sizes,
            ),
            version=version.get("version"),
            details={
                "fully_in_vram": [
                    m["name"] for m in loaded if m.get("size_vram", 0) >= m.get("size", 0) > 0
                ],
                "vram_used_bytes": sum(int(m.get("size_vram") or 0) for m in loaded),
            },
        )

    async def run(self, job: RunningJob) -> dict[str, Any]:
        spec = parse_payload(OllamaPayload, job.payload, "ollama")
        operation = spec.operation or ("chat" if "messages" in job.payload else "generate")
        body = {k: v for k, v in job.payload.items() if k != "operation"}
        gauge = ProgressGauge(job)
        await gauge.report(0.0, f"waiting for {spec.model}")
        try:
            return await self._run_operation(job, operation, body, gauge)
        except ModelNotFoundError:
            if not self.config.pull_missing:
                raise
        gauge.span(0.0, PULL_SHARE)
        await self._pull(spec.model, gauge)
        gauge.span(PULL_SHARE, 1.0)
        return await self._run_operation(job, operation, body, gauge)

    async def _run_operation(
        self, job: RunningJob, operation: str, body: dict[str, Any], gauge: ProgressGauge
    ) -> dict[str, Any]:
        if operation == "embed":
            return await self._embed(job, body, gauge)
        return await self._generate(job, operation, body, gauge)

    @contextlib.asynccontextmanager
    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """POST ``body`` and yield the successful, still streaming response."""
        try:
            async with self._client().stream("POST", path, json=body) as response:
                if not response.is_success:
                    await response.aread()
                    raise self._failure(response, str(body.get("model")))
                yield response
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error

    def _failure(self, response: httpx.Response, model: str) -> JobFailedError:
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if response.status_code == 404 and isinstance(error, str) and "not found" in error:
            return ModelNotFoundError(model, error)
        if response.status_code == 404:
            return service_fault(
                f"{self.config.url}{response.url.path} answered 404 without Ollama's error body; "
                "is EMP_OLLAMA_URL an Ollama daemon?",
                status=404,
            )
        return response_fault(response, SERVICE)

    async def _generate(
        self, job: RunningJob, endpoint: str, body: dict[str, Any], gauge: ProgressGauge
    ) -> dict[str, Any]:
        reply = GenerationReply(endpoint)
        limit = reply.token_limit(body)
        async with self._stream(f"/api/{endpoint}", {**body, "stream": True}) as response:
            async for chunk in ndjson(response, SERVICE):
                if reply.add(chunk):
                    break
                await gauge.report(token_fraction(reply.tokens, limit), f"{reply.tokens} tokens")
        if reply.final is None:
            raise service_fault(
                f"ollama's {endpoint} stream ended after {reply.tokens} tokens without its "
                "done line (daemon restarted or connection cut)",
                tokens=reply.tokens,
            )
        await gauge.done(f"{reply.tokens} tokens")
        result = reply.result()
        key = "text" if endpoint == "generate" else "message"
        await place(result, key, result.pop(key), job, max_bytes=self.config.inline_max_bytes)
        return result

    async def _embed(
        self, job: RunningJob, body: dict[str, Any], gauge: ProgressGauge
    ) -> dict[str, Any]:
        async with self._stream("/api/embed", body) as response:
            raw = await response.aread()
        reply = decode_line(raw.decode(), SERVICE)
        embeddings = reply.get("embeddings")
        if not isinstance(embeddings, list):
            raise service_fault("ollama's embed answer has no embeddings list", answer=str(reply))
        result: dict[str, Any] = {
            "model": reply.get("model", body.get("model")),
            "count": len(embeddings),
            "dimensions": len(embeddings[0]) if embeddings else 0,
            "usage": GenerationReply.usage(reply),
        }
        await place(result, "embeddings", embeddings, job, max_bytes=self.config.inline_max_bytes)
        await gauge.done(f"{len(embeddings)} embeddings")
        return result

    async def _pull(self, model: str, gauge: ProgressGauge) -> None:
        """Download ``model``; one pull per model at a time, later jobs wait for it."""
        lock = self._pulls.setdefault(model, asyncio.Lock())
        async with lock:
            log.info("ollama_model_pull_started", model=model)
            progress = PullProgress(model)
            async with self._stream("/api/pull", {"model": model, "stream": True}) as response:
                async for line in ndjson(response, SERVICE):
                    if progress.add(line):
                        break
                    await gauge.report(progress.fraction, progress.message)
            if not progress.succeeded:
                raise service_fault(f"ollama's pull of {model!r} ended before 'success'")
            await gauge.done(f"pulled {model}")
            log.info("ollama_model_pulled", model=model)
