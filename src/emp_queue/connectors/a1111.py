"""``a1111``: AUTOMATIC1111 / Forge web UI through its ``/sdapi/v1`` API.

The payload is the A1111 request body plus fields of ours::

    {"operation": "txt2img" | "img2img",        # default txt2img
     "model": "sd_xl_base_1.0.safetensors",      # optional: switch checkpoint first
     "init_image_uploads": ["<ref>"],            # optional: uploaded files (POST /api/uploads)
     "mask_upload": "<ref>",                     #   sent as init_images / mask
     "prompt": "...", "steps": 20, ...}          # sent to A1111 as is

A1111 runs one generation at a time and ``/sdapi/v1/progress`` only describes the one that is
running, so this connector runs its jobs one after another (a lock held from the checkpoint
switch to the end of the generation): the progress it reports is then its own job's, and a
second job cannot switch the checkpoint under a running one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
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
    job_fault,
    parse_payload,
    service_fault,
)
from emp_queue.connectors.http import response_fault, transport_fault
from emp_queue.errors import JobFailedError
from emp_queue.http_tls import tls_context
from emp_queue.models import ServiceModels

log = structlog.get_logger(__name__)

SERVICE = "a1111"
MAX_PARAMETER_CHARS = 1024
"""Longer strings in ``parameters``/``info`` (init images, masks, ControlNet inputs) are
replaced by a note: the result must stay small and the caller already has its inputs."""


class A1111Config(ConnectorConfig):
    model_config = SettingsConfigDict(env_prefix="EMP_A1111_", extra="forbid", frozen=True)

    url: str = "http://127.0.0.1:7860"
    progress_interval_s: float = Field(default=0.25, gt=0, le=10)
    """How often ``/sdapi/v1/progress`` is polled while a generation runs."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    request_timeout_s: float | None = Field(default=None, gt=0)
    """Limit on one generation or checkpoint switch; ``None`` leaves it to the job's timeout."""
    interrupt_timeout_s: float = Field(default=0.5, gt=0, le=10)
    """How long a cancel waits for ``/sdapi/v1/interrupt`` before giving up on it."""


class A1111Payload(BaseModel):
    """Our fields; every other field is the A1111 request body."""

    model_config = ConfigDict(extra="allow")

    operation: Literal["txt2img", "img2img"] = "txt2img"
    model: str | None = Field(default=None, min_length=1)
    init_image_uploads: list[str] = Field(default_factory=list, max_length=16)
    """Refs of images the job's customer uploaded, sent as ``init_images`` (base64)."""
    mask_upload: str | None = None
    """Ref of an uploaded mask, sent as ``mask``."""

    async def request_body(self, job: RunningJob) -> dict[str, Any]:
        """The body sent to A1111: the payload's own fields, with uploaded files inlined."""
        body = dict(self.model_extra or {})
        if self.init_image_uploads:
            _not_both(body, "init_images")
            body["init_images"] = [await _base64(job, ref) for ref in self.init_image_uploads]
        if self.mask_upload is not None:
            _not_both(body, "mask")
            body["mask"] = await _base64(job, self.mask_upload)
        return body


def _not_both(body: dict[str, Any], field: str) -> None:
    if field in body:
        raise job_fault(f"give {field!r} or its upload field, not both")


async def _base64(job: RunningJob, ref: str) -> str:
    return base64.b64encode(await job.read_upload(ref)).decode()


def checkpoint_name(title: str) -> str:
    """``"sd_xl_base_1.0.safetensors [31e35c80fc]"`` → ``"sd_xl_base_1.0.safetensors"``."""
    name, bracket, _ = title.rpartition(" [")
    return name if bracket and title.endswith("]") else title


def same_checkpoint(wanted: str, title: str) -> bool:
    """Whether ``wanted`` names the checkpoint ``title`` as A1111 matches names."""
    name = checkpoint_name(title)
    return wanted in (title, name, name.rsplit(".", 1)[0])


def _image_type(data: bytes) -> str:
    """A1111 encodes in its ``samples_format`` setting: tell the format by its magic bytes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _compact(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_PARAMETER_CHARS:
        return f"<{len(value)} characters omitted>"
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact(item) for item in value]
    return value


def _failure(response: httpx.Response) -> JobFailedError:
    """A1111's error body splits the message: ``error`` is the type, ``errors`` the text."""
    fault = response_fault(response, SERVICE)
    try:
        body = response.json()
    except ValueError:
        return fault
    if not isinstance(body, dict):
        return fault
    parts = [str(body[key]) for key in ("error", "detail", "errors") if body.get(key)]
    message = f"{SERVICE} answered {response.status_code}: {': '.join(parts) or fault}"
    return JobFailedError(message, failure_class=fault.failure_class, details=fault.details)


class A1111Connector(Connector):
    kind = "a1111"
    Config = A1111Config
    config: A1111Config

    def __init__(self, config: A1111Config | None = None) -> None:
        super().__init__(config)
        self._client: httpx.AsyncClient | None = None
        self._exclusive = asyncio.Lock()

    async def start(self) -> None:
        if self._client is None:
            timeout = httpx.Timeout(
                self.config.request_timeout_s, connect=self.config.connect_timeout_s
            )
            self._client = httpx.AsyncClient(
                base_url=self.config.url, timeout=timeout, verify=tls_context()
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("A1111Connector.start() must be called before use")
        return self._client

    async def _get_json(self, path: str) -> Any:
        try:
            response = await self.client.get(path)
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error
        if not response.is_success:
            raise _failure(response)
        return response.json()

    async def discover(self) -> Discovery:
        try:
            models = await self._get_json("/sdapi/v1/sd-models")
            options = await self._get_json("/sdapi/v1/options")
        except JobFailedError as error:
            raise ServiceUnavailableError(f"a1111 discovery failed: {error}") from error
        installed = [checkpoint_name(str(m["title"])) for m in models]
        current = options.get("sd_model_checkpoint")
        loaded = [checkpoint_name(str(current))] if current else []
        return Discovery(
            models=ServiceModels(installed=installed, loaded=loaded),
            details={"url": self.config.url},
        )

    async def run(self, job: RunningJob) -> dict[str, Any]:
        spec = parse_payload(A1111Payload, job.payload, "a1111")
        body = await spec.request_body(job)
        await job.progress(0.0, "waiting for a1111")
        async with self._exclusive:
            if spec.model is not None:
                await self._switch_checkpoint(spec.model, job)
            response = await self._generate(spec.operation, body, job)
        if not response.is_success:
            raise _failure(response)
        result = await self._result(spec.operation, response, job)
        await job.progress(1.0, "done")
        return result

    async def _switch_checkpoint(self, wanted: str, job: RunningJob) -> None:
        options = await self._get_json("/sdapi/v1/options")
        if same_checkpoint(wanted, str(options.get("sd_model_checkpoint", ""))):
            return
        titles = [str(m["title"]) for m in await self._get_json("/sdapi/v1/sd-models")]
        title = next((t for t in titles if same_checkpoint(wanted, t)), None)
        if title is None:
            installed = ", ".join(checkpoint_name(t) for t in titles) or "none"
            raise job_fault(
                f"checkpoint {wanted!r} is not installed on this a1111; installed: {installed}",
                model=wanted,
            )
        await job.progress(0.0, f"loading checkpoint {checkpoint_name(title)}")
        log.info("a1111_checkpoint_switch", job_id=job.job.id, checkpoint=title)
        try:
            response = await self.client.post(
                "/sdapi/v1/options", json={"sd_model_checkpoint": title}
            )
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error
        if not response.is_success:
            raise _failure(response)

    async def _generate(
        self, operation: str, body: dict[str, Any], job: RunningJob
    ) -> httpx.Response:
        request = asyncio.create_task(self.client.post(f"/sdapi/v1/{operation}", json=body))
        try:
            await self._report_progress_until(request, job)
            return await request
        except httpx.TransportError as error:
            raise transport_fault(error, SERVICE) from error
        except asyncio.CancelledError:
            request.cancel()
            await self._interrupt(job)
            raise
        finally:
            request.cancel()

    async def _report_progress_until(
        self, request: asyncio.Task[httpx.Response], job: RunningJob
    ) -> None:
        reported = 0.0
        while True:
            done, _ = await asyncio.wait({request}, timeout=self.config.progress_interval_s)
            if done:
                return
            try:
                progress = await self._get_json("/sdapi/v1/progress")
            except JobFailedError as error:
                # Progress is advisory: the generation request itself reports real failures.
                log.warning("a1111_progress_failed", job_id=job.job.id, error=str(error))
                continue
            fraction = min(1.0, max(0.0, float(progress.get("progress") or 0.0)))
            if fraction > reported:
                reported = fraction
                state = progress.get("state") or {}
                step, steps = state.get("sampling_step"), state.get("sampling_steps")
                await job.progress(fraction, f"step {step}/{steps}" if steps else None)

    async def _interrupt(self, job: RunningJob) -> None:
        try:
            async with asyncio.timeout(self.config.interrupt_timeout_s):
                response = await self.client.post("/sdapi/v1/interrupt")
            log.info("a1111_interrupted", job_id=job.job.id, status=response.status_code)
        except (httpx.HTTPError, TimeoutError) as error:
            # The job is being cancelled anyway; a failed interrupt only wastes GPU time.
            log.warning("a1111_interrupt_failed", job_id=job.job.id, error=repr(error))

    async def _result(
        self, operation: str, response: httpx.Response, job: RunningJob
    ) -> dict[str, Any]:
        try:
            body = response.json()
            encoded = [str(image) for image in body.get("images") or []]
        except (ValueError, AttributeError) as error:
            raise service_fault(f"a1111 answered {operation} with a malformed body") from error
        outputs = []
        for index, image in enumerate(encoded):
            try:
                data = base64.b64decode(image.split(",", 1)[-1], validate=True)
            except binascii.Error as error:
                raise service_fault(f"a1111 image {index} is not valid base64") from error
            asset = await job.store(data, content_type=_image_type(data))
            outputs.append(asset.as_result())
        info: Any = body.get("info")
        if isinstance(info, str):
            try:
                info = json.loads(info)
            except ValueError:
                log.warning("a1111_info_not_json", job_id=job.job.id)
        return {
            "operation": operation,
            "outputs": outputs,
            "parameters": _compact(body.get("parameters") or {}),
            "info": _compact(info),
        }
