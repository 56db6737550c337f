"""``rest-async``: submit a job to a REST service, then poll it until it is done.

The payload is a ``rest-sync`` request (the submit) plus how to follow the remote job::

    {"method": "POST", "path": "/jobs", "json": {...},
     "poll": {"url": "/jobs/{id}",            # template ({id} is URL-quoted), relative to the
                                              # submit URL; or "url_field": where the submit
                                              # answer holds the poll URL
              "id_field": "id",               # dotted paths into the JSON answers ("data.id")
              "status_field": "status",
              "done_values": ["succeeded"], "failed_values": ["failed"],
              "result_field": "output",       # default: the whole final poll answer
              "progress_field": "progress", "progress_max": 100,
              "error_field": "error", "failure_class": "job_fault",
              "interval_s": 1.0},
     "cancel": {"method": "POST", "url": "/jobs/{id}/cancel"}}   # optional

A remote job that ends in a failed status fails this job with ``failure_class`` (a job fault
by default: the service looked at the input and gave up). A poll answered 404 means the
service lost the job (a restart): a service fault, so it is retried. On cancel the ``cancel``
request is sent (best effort, within ``cancel_timeout_s``) before the cancel propagates.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emp_queue.connectors.base import RunningJob, job_fault, service_fault
from emp_queue.connectors.http import response_fault
from emp_queue.connectors.rest import (
    SERVICE,
    RestConnectorBase,
    RestRequest,
    decode_json,
    inline_or_store,
    payload_error,
)
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass

log = structlog.get_logger(__name__)

_MISSING = object()


class PollSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    url_field: str | None = None
    method: Literal["GET", "POST"] = "GET"
    id_field: str = "id"
    status_field: str = "status"
    done_values: list[str] = Field(
        default_factory=lambda: ["completed", "succeeded", "success", "done"], min_length=1
    )
    failed_values: list[str] = Field(
        default_factory=lambda: ["failed", "error", "cancelled", "canceled"]
    )
    result_field: str | None = None
    progress_field: str | None = None
    progress_max: float = Field(default=1.0, gt=0)
    """The ``progress_field`` value that means done (100 for a percentage)."""
    error_field: str | None = "error"
    failure_class: Literal["job_fault", "service_fault"] = "job_fault"
    interval_s: float = Field(default=1.0, ge=0.05, le=300)

    @model_validator(mode="after")
    def _one_url(self) -> PollSpec:
        if (self.url is None) == (self.url_field is None):
            raise ValueError("give exactly one of 'poll.url' (a template) or 'poll.url_field'")
        return self


class CancelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["POST", "DELETE", "PUT", "PATCH", "GET"] = "POST"
    url: str
    timeout_s: float = Field(default=0.5, gt=0, le=10)


class RestAsyncPayload(RestRequest):
    poll: PollSpec
    cancel: CancelSpec | None = None


def field_at(document: Any, path: str) -> Any:
    """The value at a dotted path (``"data.items.0.id"``), or ``_MISSING``."""
    value = document
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def _fill(template: str, remote_id: str | None) -> str:
    if "{id}" not in template:
        return template
    if remote_id is None:
        raise job_fault(f"URL template {template!r} needs an id but the submit answer had none")
    return template.replace("{id}", quote(remote_id, safe=""))


class RestAsyncConnector(RestConnectorBase):
    kind = "rest-async"

    async def run(self, job: RunningJob) -> dict[str, Any]:
        try:
            spec = RestAsyncPayload.model_validate(job.payload)
        except ValidationError as error:
            raise payload_error(self.kind, error) from error
        submit = await self.build_with_body(job, spec)
        await job.progress(0.0, f"submitting to {submit.url.host}")
        answer = await self._call(submit, lost_on_404=False)
        raw_id = field_at(answer, spec.poll.id_field)
        remote_id = None if raw_id is _MISSING or raw_id is None else str(raw_id)
        try:
            return await self._follow(job, spec, submit.url, answer, remote_id)
        except asyncio.CancelledError:
            if spec.cancel is not None and remote_id is not None:
                await self._cancel_remote(job, spec, submit.url, remote_id)
            raise

    async def _call(self, request: httpx.Request, *, lost_on_404: bool) -> Any:
        response = await self.send(request)
        where = f"{SERVICE} {request.url.host}"
        if lost_on_404 and response.status_code == 404:
            raise service_fault(
                f"{request.url} answered 404: the service no longer knows the job (restarted?)",
                status=404,
            )
        if not response.is_success:
            raise response_fault(response, where)
        return decode_json(response.content, str(request.url))

    def _poll_url(self, poll: PollSpec, submit_url: httpx.URL, answer: Any, rid: str | None) -> str:
        if poll.url_field is not None:
            found = field_at(answer, poll.url_field)
            if found is _MISSING or not isinstance(found, str):
                raise job_fault(f"the submit answer has no poll URL at {poll.url_field!r}")
            return str(submit_url.join(found))
        return str(submit_url.join(_fill(str(poll.url), rid)))

    async def _follow(
        self,
        job: RunningJob,
        spec: RestAsyncPayload,
        submit_url: httpx.URL,
        answer: Any,
        remote_id: str | None,
    ) -> dict[str, Any]:
        poll = spec.poll
        poll_url = httpx.URL(self._poll_url(poll, submit_url, answer, remote_id))
        await job.progress(0.0, f"submitted as {remote_id}" if remote_id else "submitted")
        done = {value.casefold() for value in poll.done_values}
        failed = {value.casefold() for value in poll.failed_values}
        reported = 0.0
        state = answer  # an answer that is already final needs no poll
        status = field_at(state, poll.status_field)
        while status is _MISSING or str(status).casefold() not in done | failed:
            await asyncio.sleep(poll.interval_s)
            state = await self._call(
                self.build(spec, url=poll_url, method=poll.method), lost_on_404=True
            )
            status = field_at(state, poll.status_field)
            if status is _MISSING:
                raise job_fault(
                    f"poll answer from {poll_url} has no {poll.status_field!r}; "
                    "set poll.status_field to where the service puts the status"
                )
            reported = await self._report(job, poll, state, str(status), reported)
        if str(status).casefold() in failed:
            raise self._remote_failure(poll, state, str(status), remote_id)
        value = state if poll.result_field is None else field_at(state, poll.result_field)
        if value is _MISSING:
            raise job_fault(f"the final poll answer has no {poll.result_field!r}")
        result = await inline_or_store(job, value, self.config.max_inline_bytes)
        await job.progress(1.0, str(status))
        return {"id": remote_id, "status": status, **result}

    async def _report(
        self, job: RunningJob, poll: PollSpec, state: Any, status: str, reported: float
    ) -> float:
        value = field_at(state, poll.progress_field) if poll.progress_field else _MISSING
        if isinstance(value, int | float) and not isinstance(value, bool):
            fraction = min(1.0, max(0.0, float(value) / poll.progress_max))
            if fraction > reported:
                await job.progress(fraction, status)
                return fraction
        return reported

    @staticmethod
    def _remote_failure(
        poll: PollSpec, state: Any, status: str, remote_id: str | None
    ) -> JobFailedError:
        error = field_at(state, poll.error_field) if poll.error_field else _MISSING
        reason = "" if error is _MISSING or error is None else f": {error}"
        return JobFailedError(
            f"remote job {remote_id} ended with status {status!r}{reason}",
            failure_class=FailureClass(poll.failure_class),
            details={"remote_id": remote_id, "remote_status": status},
        )

    async def _cancel_remote(
        self, job: RunningJob, spec: RestAsyncPayload, submit_url: httpx.URL, remote_id: str
    ) -> None:
        cancel = spec.cancel
        if cancel is None:
            return
        try:
            url = submit_url.join(_fill(cancel.url, remote_id))
            async with asyncio.timeout(cancel.timeout_s):
                response = await self.send(self.build(spec, url=url, method=cancel.method))
            log.info("rest_remote_cancelled", job_id=job.job.id, status=response.status_code)
        except (JobFailedError, TimeoutError) as error:
            # The job is cancelled either way; a failed remote cancel only wastes remote work.
            log.warning("rest_remote_cancel_failed", job_id=job.job.id, error=str(error))
