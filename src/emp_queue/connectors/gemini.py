"""``gemini``: Google's Gemini API, ``POST /v1beta/models/{model}:generateContent``.

The payload::

    {"model": "gemini-2.5-flash",
     "contents": [...] | "prompt": "text",       # prompt: shorthand for one user text part
     "images": [{"mime_type": "image/png", "data_base64": "..."}],   # added as inlineData
     "generationConfig": {...}}                  # other request fields pass through as is

The answer's text parts are joined into ``text``; its ``inlineData`` parts are decoded and
stored as assets. A refusal (``promptFeedback.blockReason``, or a candidate that finished for
a safety or policy reason) fails the job: the same prompt would be refused again anywhere.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
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
from emp_queue.connectors.http import response_fault, transport_fault
from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.http_tls import tls_context
from emp_queue.models import ServiceModels

log = structlog.get_logger(__name__)

SERVICE = "gemini"
REFUSAL_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
"""``finishReason`` values that mean the model refused: a job fault, not worth a retry."""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


class GeminiConfig(ConnectorConfig):
    model_config = SettingsConfigDict(env_prefix="EMP_GEMINI_", extra="forbid", frozen=True)

    base_url: str = "https://generativelanguage.googleapis.com"
    api_key: SecretStr | None = None
    """Required to run; ``start()`` refuses to go without it."""
    models: list[str] = Field(default_factory=list)
    """Models this worker advertises; empty: every model ``GET /v1beta/models`` lists."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    request_timeout_s: float | None = Field(default=600.0, gt=0)
    max_inline_text_bytes: int = Field(default=32 * 1024, ge=0)
    """A longer answer is stored as a text/plain asset instead of going into the result."""


class InlineImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mime_type: str = Field(pattern=r"^[\w.+-]+/[\w.+-]+$")
    data_base64: str = Field(min_length=1)


class GeminiPayload(BaseModel):
    """Our shorthand fields; any other field (``systemInstruction``, ``safetySettings``,
    ``tools``...) is part of the Gemini request body."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    model: str = Field(pattern=r"^(models/)?[A-Za-z0-9._-]+$")
    contents: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    prompt: str | None = None
    images: list[InlineImage] = Field(default_factory=list)
    generation_config: dict[str, Any] | None = Field(default=None, alias="generationConfig")

    @model_validator(mode="after")
    def _one_input(self) -> GeminiPayload:
        if (self.contents is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'contents' or 'prompt'")
        for index, image in enumerate(self.images):
            try:
                base64.b64decode(image.data_base64, validate=True)
            except binascii.Error as error:
                raise ValueError(f"images[{index}].data_base64 is not valid base64") from error
        return self

    def request_body(self) -> dict[str, Any]:
        if self.prompt is not None:
            contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": self.prompt}]}]
        else:
            contents = [dict(content) for content in self.contents or []]
        if self.images:
            last = contents[-1]
            last["parts"] = [
                *(last.get("parts") or []),
                *(
                    {"inlineData": {"mimeType": i.mime_type, "data": i.data_base64}}
                    for i in self.images
                ),
            ]
        body: dict[str, Any] = {**(self.model_extra or {}), "contents": contents}
        if self.generation_config is not None:
            body["generationConfig"] = self.generation_config
        return body


def _google_error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_delay_s(error: dict[str, Any]) -> float | None:
    """Google puts the wait in a ``google.rpc.RetryInfo`` detail as ``"37s"``."""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _failure(response: httpx.Response) -> JobFailedError:
    """Gemini's answers to failures; a rejected key is this worker's problem, not the job's."""
    fault = response_fault(response, SERVICE)
    error = _google_error(response)
    details = dict(fault.details)
    if error.get("status"):
        details["google_status"] = error["status"]
    if "retry_after_s" not in details and (delay := _retry_delay_s(error)) is not None:
        details["retry_after_s"] = delay
    reasons = {str(d.get("reason")) for d in error.get("details") or [] if isinstance(d, dict)}
    message = str(fault)
    if (
        response.status_code in (401, 403)
        or "API_KEY_INVALID" in reasons
        or ("API key not valid" in message)
    ):
        return service_fault(
            f"{message} — check EMP_GEMINI_API_KEY on this worker", **details, auth=True
        )
    return JobFailedError(message, failure_class=fault.failure_class, details=details)


def _refusal(body: dict[str, Any]) -> JobFailedError | None:
    feedback = body.get("promptFeedback") or {}
    if feedback.get("blockReason"):
        reason = str(feedback["blockReason"])
        blocked = [
            r.get("category") for r in feedback.get("safetyRatings") or [] if r.get("blocked")
        ]
        return job_fault(
            f"gemini blocked the prompt: blockReason {reason}", block_reason=reason, blocked=blocked
        )
    candidates = body.get("candidates") or []
    reason = str(candidates[0].get("finishReason", "")) if candidates else ""
    if reason in REFUSAL_FINISH_REASONS:
        blocked = [
            r.get("category") for r in candidates[0].get("safetyRatings") or [] if r.get("blocked")
        ]
        return job_fault(
            f"gemini refused to answer: finishReason {reason}",
            finish_reason=reason,
            blocked=blocked,
        )
    return None


class GeminiConnector(Connector):
    kind = "gemini"
    Config = GeminiConfig
    config: GeminiConfig

    def __init__(self, config: GeminiConfig | None = None) -> None:
        super().__init__(config)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self.config.api_key is None or not self.config.api_key.get_secret_value():
            raise ConfigurationError(
                "EMP_GEMINI_API_KEY is not set; the gemini connector needs a Gemini API key "
                "(https://aistudio.google.com/apikey)"
            )
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.config.base_url,
                headers={"x-goog-api-key": self.config.api_key.get_secret_value()},
                timeout=httpx.Timeout(
                    self.config.request_timeout_s, connect=self.config.connect_timeout_s
                ),
                verify=tls_context(),
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("GeminiConnector.start() must be called before use")
        return self._client

    async def discover(self) -> Discovery:
        models = list(self.config.models) or await self._listed_models()
        # A hosted model has no load step: every model it serves is as good as loaded.
        return Discovery(models=ServiceModels(installed=models, loaded=models))

    async def _listed_models(self) -> list[str]:
        names: list[str] = []
        params: dict[str, str | int] = {"pageSize": 1000}
        while True:
            try:
                response = await self.client.get("/v1beta/models", params=params)
            except httpx.TransportError as error:
                raise ServiceUnavailableError(f"gemini model list failed: {error}") from error
            if not response.is_success:
                raise ServiceUnavailableError(f"gemini model list failed: {_failure(response)}")
            body = response.json()
            names += [
                str(m["name"]).removeprefix("models/")
                for m in body.get("models") or []
                if "generateContent" in (m.get("supportedGenerationMethods") or [])
            ]
            if not body.get("nextPageToken"):
                return names
            params["pageToken"] = str(body["nextPageToken"])

    async def run(self, job: RunningJob) -> dict[str, Any]:
        spec = parse_payload(GeminiPayload, job.payload, "gemini")
        model = spec.model.removeprefix("models/")
        await job.progress(0.0, f"asking {model}")
        try:
            response = await self.client.post(
                f"/v1beta/models/{model}:generateContent", json=spec.request_body()
            )
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error
        if not response.is_success:
            raise _failure(response)
        try:
            body = response.json()
        except ValueError as error:
            raise service_fault("gemini answered 200 with a body that is not JSON") from error
        if (refusal := _refusal(body)) is not None:
            raise refusal
        result = await self._result(model, body, job)
        await job.progress(1.0, "answer received")
        return result

    async def _result(self, model: str, body: dict[str, Any], job: RunningJob) -> dict[str, Any]:
        candidates = body.get("candidates") or []
        if not candidates:
            raise service_fault("gemini answered without candidates or a block reason")
        candidate = candidates[0]
        texts: list[str] = []
        outputs: list[dict[str, Any]] = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            inline = part.get("inlineData") or part.get("inline_data")
            if inline is not None:
                try:
                    data = base64.b64decode(inline.get("data", ""), validate=True)
                except binascii.Error as error:
                    raise service_fault(
                        "gemini sent an inlineData part that is not base64"
                    ) from error
                content_type = (
                    inline.get("mimeType") or inline.get("mime_type") or "application/octet-stream"
                )
                outputs.append((await job.store(data, content_type=str(content_type))).as_result())
            elif "text" in part and not part.get("thought"):
                texts.append(str(part["text"]))
        text = "".join(texts)
        result: dict[str, Any] = {
            "model": body.get("modelVersion") or model,
            "finish_reason": candidate.get("finishReason"),
            "usage": body.get("usageMetadata"),
            "outputs": outputs,
        }
        encoded = text.encode()
        if len(encoded) > self.config.max_inline_text_bytes:
            asset = await job.store(encoded, content_type="text/plain; charset=utf-8")
            outputs.append(asset.as_result())
            result["text_asset"] = asset.url
        else:
            result["text"] = text
        return result
