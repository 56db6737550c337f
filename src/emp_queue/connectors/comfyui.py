"""``comfyui``: run ComfyUI workflows (a local instance per GPU, or a remote one).

The payload::

    {"workflow": {"3": {"class_type": "KSampler", "inputs": {...}}, ...},   # API format
     "inputs": [{"name": "in.png", "data_base64": "..."},                    # optional: files
                {"name": "mask.png", "url": "https://...", "type": "input",  # uploaded first
                 "subfolder": ""},
                {"name": "ref.png", "upload": "s3://assets/uploads/acme/up-…/ref.png"}],
     "output_types": ["output"]}                                             # optional

``prompt`` is accepted in place of ``workflow`` (the key ComfyUI's own ``POST /prompt`` uses).
Inputs go to ComfyUI's input folder through ``POST /upload/image``, each under a name of the
job's own (``emp-<12 hex>-in.png``), and the workflow's node inputs that name the file
(``in.png``, ``sub/in.png``, ``in.png [input]``) are pointed at it: concurrent jobs that send
files of the same name do not see each other's. An ``upload`` is the ``ref`` of a file the
job's customer sent to ``POST /api/uploads``; the worker reads it from the asset store. The
result::

    {"prompt_id": "...", "outputs": [{<stored asset>, "node": "9", "kind": "images"}, ...],
     "node_errors": {...}}    # only when ComfyUI dropped some invalid outputs and ran the rest

Every file of the history's outputs whose ``type`` is in ``output_types`` (default: the
connector's ``EMP_COMFYUI_OUTPUT_TYPES``, ``["output"]``: saved files, not previews) is
downloaded through ``/view`` and stored with ``job.store``.

How a job runs: one WebSocket per connector (opened in :meth:`ComfyUIConnector.start`, shared
by every concurrent job, see :mod:`.comfyui_socket`); the prompt goes in with our
``client_id`` and our own ``prompt_id`` (uuid5 of job id and attempt, so a resubmit of the same
attempt cannot run twice); messages drive progress; ``execution_success`` ends it, then the
outputs come from ``/history``. Failure classes: a 400 from ``POST /prompt`` (invalid
workflow, missing model...) is a job fault; ``execution_error`` follows the rule in
:mod:`.comfyui_prompt`; a prompt ComfyUI lost (restart) is a service fault, never a success.
There is no cap on a job's length here: the worker owns job timeouts, the ``*_timeout_s``
settings bound single HTTP calls only.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import mimetypes
import re
import uuid
from typing import Any

import httpx
import structlog
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from emp_queue.connectors.base import (
    Connector,
    ConnectorConfig,
    Discovery,
    RunningJob,
    ServiceUnavailableError,
)
from emp_queue.connectors.comfyui_discovery import discovery, models_in_prompt, newest_prompt
from emp_queue.connectors.comfyui_http import ComfyUIHttp, FileRef, output_files
from emp_queue.connectors.comfyui_payload import (
    ComfyUIPayload,
    InputFile,
    OutputType,
    job_input_name,
    prompt_id_for,
    with_renamed_inputs,
)
from emp_queue.connectors.comfyui_prompt import PromptWaiter, WaitPolicy
from emp_queue.connectors.comfyui_socket import ComfyUISocket, PromptWatch
from emp_queue.connectors.http import raise_for_response, transport_fault
from emp_queue.errors import JobFailedError
from emp_queue.http_tls import tls_context

log = structlog.get_logger(__name__)

DEFAULT_SERVICE_ERROR_MARKERS = (
    "OutOfMemoryError",
    "out of memory",
    "MemoryError",
    "CUDA error",
    "CUDA_ERROR",
    "cuDNN",
    "CUBLAS_STATUS",
    "HIP error",
    "device-side assert",
    "ConnectionError",
    "TimeoutError",
    "No space left on device",
)
"""Substrings (case-insensitive) of ``exception_type: message`` that make an
``execution_error`` the machine's fault rather than the workflow's."""
_SAVED_FILES: list[OutputType] = ["output"]


class ComfyUIConfig(ConnectorConfig):
    model_config = SettingsConfigDict(env_prefix="EMP_COMFYUI_", extra="forbid", frozen=True)

    url: str = Field(default="http://127.0.0.1:8188", pattern=r"^https?://[^?#]+$")
    """Base URL; may carry a path prefix for a ComfyUI behind a reverse proxy."""
    username: str | None = None
    """Basic auth (with ``password``) for a remote ComfyUI behind an auth proxy."""
    password: SecretStr | None = None
    token: SecretStr | None = None
    """Bearer token, the alternative to basic auth; sent on HTTP and the WebSocket handshake."""
    connect_timeout_s: float = Field(default=5.0, gt=0)
    http_timeout_s: float = Field(default=30.0, gt=0)
    """Bound of one API call (submit, queue, history); not of the job."""
    transfer_timeout_s: float = Field(default=300.0, gt=0)
    """Bound of one file download or upload."""
    cancel_timeout_s: float = Field(default=0.8, gt=0, le=5)
    """Time given to ``/queue`` delete + ``/interrupt`` when a job is cancelled."""
    poll_interval_s: float = Field(default=30.0, gt=0)
    """How often a running job checks ``/queue`` and ``/history`` in case a message was lost."""
    unreachable_grace_s: float = Field(default=60.0, ge=0)
    """How long a running job waits out an unreachable ComfyUI before failing (service fault)."""
    history_wait_s: float = Field(default=10.0, ge=0)
    reconnect_backoff_s: float = Field(default=0.1, gt=0)
    reconnect_backoff_max_s: float = Field(default=10.0, gt=0)
    output_types: list[OutputType] = Field(default_factory=lambda: _SAVED_FILES.copy())
    service_error_markers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SERVICE_ERROR_MARKERS)
    )

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> ComfyUIConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both EMP_COMFYUI_USERNAME and EMP_COMFYUI_PASSWORD, or neither")
        if self.token is not None and self.username is not None:
            raise ValueError("set EMP_COMFYUI_TOKEN or a username and password, not both")
        return self

    def auth_headers(self) -> dict[str, str]:
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password.get_secret_value()}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}

    def socket_url(self, client_id: str) -> str:
        base = httpx.URL(self.url)
        scheme = "wss" if base.scheme == "https" else "ws"
        url = base.copy_with(scheme=scheme, path=base.path.rstrip("/") + "/ws")
        return str(url.copy_merge_params({"clientId": client_id}))


class ComfyUIConnector(Connector):
    kind = "comfyui"
    Config = ComfyUIConfig
    config: ComfyUIConfig

    def __init__(self, config: ComfyUIConfig | None = None) -> None:
        super().__init__(config)
        self.client_id = uuid.uuid4().hex
        """Our ``clientId``: ComfyUI sends our prompts' messages to the socket opened with it."""
        self._http: ComfyUIHttp | None = None
        self._socket: ComfyUISocket | None = None
        self._last_models: list[str] = []
        """The models the last finished job named: ComfyUI keeps them loaded (discover)."""
        self._last_prompt_id: str | None = None
        self._policy = WaitPolicy(
            poll_interval_s=self.config.poll_interval_s,
            unreachable_grace_s=self.config.unreachable_grace_s,
            history_wait_s=self.config.history_wait_s,
            service_error_markers=tuple(self.config.service_error_markers),
        )

    async def start(self) -> None:
        if self._http is not None:
            return
        timeout = httpx.Timeout(self.config.http_timeout_s, connect=self.config.connect_timeout_s)
        client = httpx.AsyncClient(
            base_url=self.config.url,
            headers=self.config.auth_headers(),
            timeout=timeout,
            verify=tls_context(),
        )
        http = ComfyUIHttp(client, self.config.transfer_timeout_s)
        socket = ComfyUISocket(
            self.config.socket_url(self.client_id),
            self.config.auth_headers(),
            open_timeout_s=self.config.connect_timeout_s,
            backoff_s=self.config.reconnect_backoff_s,
            backoff_max_s=self.config.reconnect_backoff_max_s,
        )
        try:
            await http.get_json("/system_stats")
            await socket.open()
        except JobFailedError as error:
            await client.aclose()
            raise ServiceUnavailableError(
                f"ComfyUI at {self.config.url} is not available: {error}", error.details
            ) from error
        self._http, self._socket = http, socket
        log.info("comfyui_connector_started", url=self.config.url, client_id=self.client_id)

    async def close(self) -> None:
        http, socket = self._http, self._socket
        self._http = self._socket = None
        if socket is not None:
            await socket.close()
        if http is not None:
            await http.client.aclose()

    async def check_health(self) -> None:
        http, _ = self._started()
        await http.get_json("/system_stats")

    async def discover(self) -> Discovery:
        http, _ = self._started()
        object_info, stats, history = await asyncio.gather(
            http.get_json("/object_info"),
            http.get_json("/system_stats"),
            http.get_json("/history?max_items=1"),
        )
        found = discovery(object_info, stats, self.client_id)
        installed = found.models.installed
        newest = newest_prompt(history)
        if newest is not None and newest[0] != self._last_prompt_id:
            loaded = models_in_prompt(newest[1], found.details["models_by_input"], installed)
        else:
            loaded = [model for model in self._last_models if model in installed]
        return dataclasses.replace(found, models=found.models.model_copy(update={"loaded": loaded}))

    async def run(self, job: RunningJob) -> dict[str, Any]:
        payload = ComfyUIPayload.parse(job.payload)
        http, socket = self._started()
        prompt_id = prompt_id_for(job.job.id, job.attempt)
        with socket.watch(prompt_id) as watch:
            try:
                entry, accepted = await self._execute(job, payload, http, watch)
            except asyncio.CancelledError:
                await self._cancel_remote(http, prompt_id)
                raise
        result: dict[str, Any] = {
            "prompt_id": prompt_id,
            "outputs": await self._store_outputs(job, payload, http, entry),
        }
        if isinstance(accepted, dict) and accepted.get("node_errors"):
            result["node_errors"] = accepted["node_errors"]
        await job.progress(1.0, "done")
        self._last_models = list(job.job.requirements.get("models", []))
        self._last_prompt_id = prompt_id
        return result

    def _started(self) -> tuple[ComfyUIHttp, ComfyUISocket]:
        if self._http is None or self._socket is None:
            raise ServiceUnavailableError("the ComfyUI connector is not started (call start())")
        return self._http, self._socket

    async def _execute(
        self, job: RunningJob, payload: ComfyUIPayload, http: ComfyUIHttp, watch: PromptWatch
    ) -> tuple[dict[str, Any], Any]:
        renames: dict[str, str] = {}
        for item in payload.inputs:
            stored = await http.upload(
                job_input_name(item.name, watch.prompt_id),
                await self._input_bytes(job, item),
                item.type,
                item.subfolder,
            )
            renames[item.path] = f"{item.subfolder}/{stored}" if item.subfolder else stored
        workflow = with_renamed_inputs(payload.workflow, renames)
        accepted = await http.submit(workflow, self.client_id, watch.prompt_id)
        log.info("comfyui_prompt_submitted", job_id=job.job.id, prompt_id=watch.prompt_id)
        await job.progress(0.0, "queued in ComfyUI")
        waiter = PromptWaiter(http, watch, job, payload.class_types(), self._policy)
        return await waiter.wait(), accepted

    async def _input_bytes(self, job: RunningJob, item: InputFile) -> bytes:
        if item.upload is not None:
            return await job.read_upload(item.upload)
        if item.url is None:
            return item.decoded()
        # A client of its own: ComfyUI's credentials must not travel to someone else's URL.
        timeout = httpx.Timeout(self.config.transfer_timeout_s)
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=True, verify=tls_context()
        ) as fetcher:
            try:
                response = await fetcher.get(item.url)
            except httpx.TransportError as error:
                raise transport_fault(error, f"input {item.name!r} ({item.url})") from error
        raise_for_response(response, f"input {item.name!r} ({item.url})")
        return response.content

    async def _cancel_remote(self, http: ComfyUIHttp, prompt_id: str) -> None:
        try:
            async with asyncio.timeout(self.config.cancel_timeout_s):
                await http.cancel(prompt_id)
        except (TimeoutError, JobFailedError) as error:
            log.warning("comfyui_cancel_failed", prompt_id=prompt_id, error=repr(error))
        else:
            log.info("comfyui_prompt_cancelled", prompt_id=prompt_id)

    async def _store_outputs(
        self, job: RunningJob, payload: ComfyUIPayload, http: ComfyUIHttp, entry: dict[str, Any]
    ) -> list[dict[str, Any]]:
        types: set[str] = set(payload.output_types or self.config.output_types)
        outputs: list[dict[str, Any]] = []
        for ref in output_files(entry, types):
            data, content_type = await http.download(ref)
            asset = await job.store(
                data, content_type=_content_type(ref, content_type), filename=_asset_name(ref)
            )
            outputs.append({**asset.as_result(), "node": ref.node, "kind": ref.kind})
        return outputs


def _content_type(ref: FileRef, header: str | None) -> str:
    if header and not header.startswith("application/octet-stream"):
        return header
    return mimetypes.guess_type(ref.filename)[0] or "application/octet-stream"


def _asset_name(ref: FileRef) -> str:
    """ComfyUI's file name (with its subfolder), reduced to what an asset key allows."""
    name = "-".join(part for part in (*ref.subfolder.split("/"), ref.filename) if part)
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip("._-")[:200] or "output"
