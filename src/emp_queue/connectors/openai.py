"""``openai``: any OpenAI-compatible server — OpenAI itself, vLLM, LM Studio, llama.cpp, Ollama.

Payload: ``{"operation": "chat" | "images" | "responses", <the request body>}``. Without
``operation`` a payload with ``messages`` is a chat, one with ``input`` a response, one with
``prompt`` an image generation. See :mod:`~emp_queue.connectors.openai_chat`,
:mod:`~emp_queue.connectors.openai_images`, :mod:`~emp_queue.connectors.openai_responses` for
each operation, and :mod:`~emp_queue.connectors.openai_http` for rate limits and failure
classes.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from emp_queue.connectors.base import (
    Connector,
    ConnectorConfig,
    Discovery,
    RunningJob,
    ServiceUnavailableError,
    job_fault,
    parse_payload,
    service_fault,
)
from emp_queue.connectors.openai_chat import run_chat
from emp_queue.connectors.openai_http import OpenAIHttp
from emp_queue.connectors.openai_images import run_images
from emp_queue.connectors.openai_responses import run_responses
from emp_queue.connectors.outputs import INLINE_MAX_BYTES
from emp_queue.errors import JobFailedError
from emp_queue.models import ServiceModels

log = structlog.get_logger(__name__)

Operation = Literal["chat", "images", "responses"]
INFERRED_OPERATIONS: tuple[tuple[str, Operation], ...] = (
    ("messages", "chat"),
    ("input", "responses"),
    ("prompt", "images"),
)


class OpenAIConfig(ConnectorConfig):
    model_config = SettingsConfigDict(env_prefix="EMP_OPENAI_", extra="forbid", frozen=True)

    base_url: str = Field(default="https://api.openai.com/v1", pattern=r"^https?://")
    """The API root, ``/v1`` included (vLLM: ``http://127.0.0.1:8000/v1``)."""
    api_key: SecretStr | None = None
    """Sent as ``Authorization: Bearer``; local servers usually need none."""
    organization: str | None = None
    project: str | None = None
    models: list[str] = Field(default_factory=list)
    """Advertised when the server cannot list its models (``GET /models`` fails)."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float | None = Field(default=600.0, gt=0)
    """Longest wait for the next bytes; an image generation answers only when done."""
    max_429_retries: int = Field(default=3, ge=0, le=20)
    max_retry_after_s: float = Field(default=30.0, ge=0)
    """A 429 asking to wait longer than this fails the attempt instead (service fault)."""
    poll_interval_s: float = Field(default=1.0, gt=0)
    """How often a background response is polled."""
    cancel_timeout_s: float = Field(default=1.0, gt=0)
    """How long a cancelled job waits for ``POST /responses/{id}/cancel``."""
    inline_max_bytes: int = Field(default=INLINE_MAX_BYTES, ge=0)
    """Text larger than this goes to the asset store."""


class OpenAIPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    operation: Operation | None = None


class OpenAIConnector(Connector):
    kind = "openai"
    Config = OpenAIConfig
    config: OpenAIConfig

    def __init__(self, config: OpenAIConfig | None = None) -> None:
        super().__init__(config)
        self._http: OpenAIHttp | None = None
        self._served: list[str] = []  # the server's own model ids, from the last discovery
        self._aliases: dict[str, str] = {}  # a name a client may ask for -> the server's id

    def _client(self) -> OpenAIHttp:
        if self._http is None:
            config = self.config
            self._http = OpenAIHttp(
                config.base_url,
                api_key=config.api_key,
                organization=config.organization,
                project=config.project,
                timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
                max_429_retries=config.max_429_retries,
                max_retry_after_s=config.max_retry_after_s,
            )
        return self._http

    async def start(self) -> None:
        # Any HTTP answer proves the server is there; what /models says is discover()'s business.
        try:
            await self._client().api.get("models")
        except httpx.TransportError as error:
            raise ServiceUnavailableError(
                f"{self.config.base_url} is unreachable ({type(error).__name__}: {error}); "
                "check EMP_OPENAI_BASE_URL"
            ) from error

    async def check_health(self) -> None:
        # A route that does not exist: any answer proves the server is up, and unlike /models
        # it takes no model lock, so it never interrupts a llama.cpp stream.
        try:
            await self._client().api.get("", timeout=self.config.connect_timeout_s)
        except httpx.TransportError as error:
            raise ServiceUnavailableError(
                f"{self.config.base_url} does not answer ({type(error).__name__}: {error})"
            ) from error

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def discover(self) -> Discovery:
        try:
            models, source = await self._listed_models(), "server"
        except JobFailedError as error:
            refused = error.details.get("status") in (401, 403)
            if refused or not self.config.models:
                raise ServiceUnavailableError(
                    f"cannot list the models of {self.config.base_url}: {error}; fix the server "
                    "or key, or name the models in EMP_OPENAI_MODELS"
                ) from error
            log.warning("openai_models_listing_failed", error=str(error), using="EMP_OPENAI_MODELS")
            models, source = list(self.config.models), "config"
        self._served = models
        self._aliases = model_aliases(models)
        models = [*models, *self._aliases]
        # A hosted API has every listed model ready: installed and loaded are the same.
        return Discovery(
            models=ServiceModels(installed=models, loaded=models),
            details={"base_url": self.config.base_url, "models_source": source},
        )

    async def _listed_models(self) -> list[str]:
        listing = await self._client().json("GET", "models")
        try:
            return [str(model["id"]) for model in listing["data"]]
        except (KeyError, TypeError) as error:
            raise service_fault(f"GET /models answered an unexpected shape: {error!r}") from error

    async def run(self, job: RunningJob) -> dict[str, Any]:
        operation = self._operation(job.payload)
        body = {k: v for k, v in job.payload.items() if k != "operation"}
        config = self.config
        requested = body.get("model")
        if isinstance(requested, str) and requested in self._aliases:
            body["model"] = self._aliases[requested]
        if operation == "chat":
            return await run_chat(
                self._client(),
                job,
                body,
                inline_max_bytes=config.inline_max_bytes,
                served_models=self._served,
                requested_model=requested if isinstance(requested, str) else None,
            )
        if operation == "images":
            return await run_images(self._client(), job, body)
        return await run_responses(
            self._client(),
            job,
            body,
            poll_interval_s=config.poll_interval_s,
            cancel_timeout_s=config.cancel_timeout_s,
            inline_max_bytes=config.inline_max_bytes,
        )

    @staticmethod
    def _operation(payload: dict[str, Any]) -> Operation:
        spec = parse_payload(OpenAIPayload, payload, "openai")
        if spec.operation is not None:
            return spec.operation
        for field, operation in INFERRED_OPERATIONS:
            if field in payload:
                return operation
        raise job_fault(
            "the openai payload names no operation: set operation to chat, images or responses "
            "(or give messages, input or prompt)"
        )


def model_aliases(ids: list[str]) -> dict[str, str]:
    """Names a client would ask for, for ids that are file paths (llama.cpp serves
    ``/models/gemma-3-270m-it-Q8_0.gguf``): the file name, with and without ``.gguf``."""
    aliases: dict[str, str] = {}
    for model_id in ids:
        path = PurePosixPath(model_id)
        if "/" not in model_id and path.suffix != ".gguf":
            continue
        for alias in (path.name, path.name.removesuffix(".gguf")):
            if alias and alias not in ids:
                aliases.setdefault(alias, model_id)
    return aliases
