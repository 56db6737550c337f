"""``AsyncClient``: submit, wait, stream progress, cancel — from asyncio code.

async with AsyncClient("http://127.0.0.1:3331", api_key) as client:
    handle = await client.submit(JobSpec(service_required="comfyui", payload=...))
    async for event in handle.events():
        print(event.type, event.data.get("progress"))
    job = await handle.result(timeout_s=600)
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import aconnect_sse

from emp_queue.client.codec import job_from_json, raise_for_error
from emp_queue.client.errors import ApiUnreachableError, ServerError, WaitTimeoutError
from emp_queue.http_tls import tls_context
from emp_queue.models import Event, Job, JobSpec, JobStatus

RECONNECT_DELAYS_S = (0.1, 0.5, 1.0, 2.0, 5.0)
SUBMIT_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
"""Pauses between attempts of a submission whose outcome is unknown (a 5xx, a lost
connection). Safe: every attempt carries the id chosen before the first one, and the API
answers a known id with the job it already stored."""


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def _spec_json(spec: JobSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The spec as the API takes it, with an id: chosen here, before the first attempt, so a
    retry after an ambiguous outcome names the same job instead of creating a second one."""
    model = spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec)
    body = model.model_dump(mode="json", exclude_none=True)
    body.setdefault("id", str(uuid.uuid4()))
    return body


class JobHandle:
    """A submitted job, seen from the client."""

    def __init__(self, client: AsyncClient, job: Job) -> None:
        self.client = client
        self.job = job

    @property
    def id(self) -> str:
        return self.job.id

    async def status(self) -> JobStatus:
        self.job = await self.client.get(self.id)
        return self.job.status

    async def result(self, timeout_s: float | None = None) -> Job:
        """Wait for the job to finish (any terminal status) and return it."""
        self.job = await self.client.wait(self.id, timeout_s=timeout_s)
        return self.job

    def events(self, after: str | None = None) -> AsyncIterator[Event]:
        return self.client.events(self.id, after=after)

    async def cancel(self, reason: str | None = None) -> Job:
        self.job = await self.client.cancel(self.id, reason)
        return self.job

    async def explain(self) -> dict[str, Any]:
        return await self.client.explain(self.id)


class AsyncClient:
    """The emp-job-queue API from asyncio code; one HTTP connection pool per client."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            verify=tls_context(),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ApiUnreachableError(
                f"cannot reach the API at {self._http.base_url}: {error}; is `emp api` running "
                "and EMP_API_URL right?"
            ) from error
        raise_for_error(response)
        return response.json()

    async def _submit_request(self, path: str, body: dict[str, Any]) -> Any:
        """POST a submission; an unknown outcome (5xx, lost connection) is retried with the
        same body, ids included, so the job exists once whichever attempt reached Redis."""
        for delay_s in (*SUBMIT_RETRY_DELAYS_S, None):
            try:
                return await self._request("POST", path, json=body)
            except (ServerError, ApiUnreachableError):
                if delay_s is None:
                    raise
                await asyncio.sleep(delay_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def submit(self, spec: JobSpec | Mapping[str, Any]) -> JobHandle:
        """Submit a job; its id (the spec's, or one chosen here) makes retries idempotent."""
        data = await self._submit_request("/api/jobs", _spec_json(spec))
        return JobHandle(self, job_from_json(data))

    async def submit_batch(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> list[JobHandle]:
        data = await self._submit_request(
            "/api/jobs/batch", {"jobs": [_spec_json(s) for s in specs]}
        )
        return [JobHandle(self, job_from_json(job)) for job in data["jobs"]]

    async def upload(
        self,
        data: bytes | PathLike[str],
        *,
        content_type: str | None = None,
        filename: str | None = None,
        customer: str | None = None,
    ) -> dict[str, Any]:
        """Upload a job's input file (``POST /api/uploads``) and return the API's answer: put
        its ``ref`` in a payload (a ComfyUI input's ``upload``, a REST job's ``body_upload``).

        ``data`` is the bytes or a path; the type defaults to the one the file name implies.
        Admin keys name the ``customer`` the file is for; a client key uploads for its own.
        """
        if not isinstance(data, bytes):
            path = Path(data)
            # The API keeps letters, digits, '.', '_' and '-': "my photo.png" → "my-photo.png".
            filename = filename or re.sub(r"[^A-Za-z0-9._-]", "-", path.name).lstrip("._-")[:200]
            data = await asyncio.to_thread(path.read_bytes)
        content_type = content_type or mimetypes.guess_type(filename or "")[0]
        if content_type is None:
            raise ValueError(
                f"cannot tell the type of {filename or 'the upload'!r}; pass content_type"
            )
        params = {k: v for k, v in {"filename": filename, "customer": customer}.items() if v}
        answer: dict[str, Any] = await self._request(
            "POST",
            "/api/uploads",
            content=data,
            params=params,
            headers={"Content-Type": content_type},
        )
        return answer

    async def get(self, job_id: str) -> Job:
        return job_from_json(await self._request("GET", f"/api/jobs/{job_id}"))

    async def list_jobs(
        self, *, cursor: str | None = None, limit: int = 50, **filters: str
    ) -> Page:
        params = {k: v for k, v in {**filters, "cursor": cursor, "limit": limit}.items() if v}
        data = await self._request("GET", "/api/jobs", params=params)
        return Page([job_from_json(j) for j in data["jobs"]], data.get("next_cursor"))

    async def cancel(self, job_id: str, reason: str | None = None) -> Job:
        body = {"reason": reason} if reason else None
        return job_from_json(await self._request("POST", f"/api/jobs/{job_id}/cancel", json=body))

    async def retry(self, job_id: str) -> Job:
        return job_from_json(await self._request("POST", f"/api/jobs/{job_id}/retry"))

    async def explain(self, job_id: str) -> dict[str, Any]:
        explanation: dict[str, Any] = await self._request("GET", f"/api/jobs/{job_id}/explain")
        return explanation

    async def workers(self) -> list[dict[str, Any]]:
        """Live workers: id, machine, status, last heartbeat, capabilities, running jobs."""
        workers: list[dict[str, Any]] = (await self._request("GET", "/api/workers"))["workers"]
        return workers

    async def queues(self) -> list[dict[str, Any]]:
        """Per service: job counts per status and how long the front has waited."""
        queues: list[dict[str, Any]] = (await self._request("GET", "/api/queues"))["queues"]
        return queues

    async def create_schedule(
        self,
        cron: str,
        job: JobSpec | Mapping[str, Any],
        *,
        schedule_id: str | None = None,
        timezone: str = "UTC",
    ) -> dict[str, Any]:
        """A recurring schedule: every tick of ``cron`` (five fields, in ``timezone``) submits
        ``job`` once, with the id ``<schedule id>.<tick ms>``."""
        body: dict[str, Any] = {"cron": cron, "timezone": timezone, "job": _spec_json(job)}
        body["job"].pop("id", None)
        if schedule_id is not None:
            body["id"] = schedule_id
        found: dict[str, Any] = await self._request("POST", "/api/schedules", json=body)
        return found

    async def schedules(self) -> list[dict[str, Any]]:
        """Schedules with their next tick, last tick and last job id."""
        found: list[dict[str, Any]] = (await self._request("GET", "/api/schedules"))["schedules"]
        return found

    async def delete_schedule(self, schedule_id: str) -> bool:
        found = await self._request("DELETE", f"/api/schedules/{quote(schedule_id, safe='')}")
        return bool(found["deleted"])

    async def queue_controls(self) -> list[dict[str, Any]]:
        """Services and pools an operator paused or drained: target, name, state, since, by."""
        controls: list[dict[str, Any]] = (await self._request("GET", "/api/queues"))["controls"]
        return controls

    async def control_queue(
        self, target: str, name: str, action: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Queue control (admin keys): ``target`` "service" (``action`` "pause", "drain" or
        "resume") or "pool" ("pause" or "resume"); returns the new state."""
        path = "queues" if target == "service" else "pools"
        body = {"reason": reason} if reason and action != "resume" else None
        found: dict[str, Any] = await self._request(
            "POST", f"/api/{path}/{quote(name, safe='')}/{action}", json=body
        )
        return found

    async def customer(self, customer_id: str) -> dict[str, Any]:
        """A customer's policy (weight, caps) and its running/waiting counts."""
        found: dict[str, Any] = await self._request(
            "GET", f"/api/customers/{quote(customer_id, safe='')}"
        )
        return found

    async def set_customer(self, customer_id: str, policy: Mapping[str, Any]) -> dict[str, Any]:
        """Replace a customer's policy (admin keys): ``weight``, ``max_running``,
        ``max_running_by_service``, ``max_pending``; a field left out means no limit."""
        found: dict[str, Any] = await self._request(
            "PUT", f"/api/customers/{quote(customer_id, safe='')}", json=dict(policy)
        )
        return found

    async def usage(
        self,
        *,
        customer: str | None = None,
        service: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        granularity: str = "hour",
    ) -> list[dict[str, Any]]:
        """Usage rows (attempts, wait/run/GPU seconds, output bytes) per customer, service and
        pool by hour or day; a client key gets its own customer's only."""
        query = {
            name: value
            for name, value in (
                ("customer", customer),
                ("service", service),
                ("from", from_ms),
                ("to", to_ms),
                ("granularity", granularity),
            )
            if value is not None
        }
        rows: list[dict[str, Any]] = (await self._request("GET", "/api/usage", params=query))[
            "rows"
        ]
        return rows

    async def customers(self) -> list[dict[str, Any]]:
        """Customers that have a policy, with their counts (admin keys)."""
        found: list[dict[str, Any]] = await self._request("GET", "/api/customers")
        return found

    async def machines(self) -> list[dict[str, Any]]:
        """Known machines: phase, hardware, startup steps, services, workers, ``online``."""
        machines: list[dict[str, Any]] = (await self._request("GET", "/api/machines"))["machines"]
        return machines

    async def remove_machine(self, machine_id: str) -> int:
        """Forget a machine; returns how many jobs its workers held and were requeued."""
        reply = await self._request("DELETE", f"/api/machines/{quote(machine_id, safe='')}")
        return int(reply["requeued"])

    async def events(self, job_id: str, *, after: str | None = None) -> AsyncIterator[Event]:
        """The job's events, from the start (or after ``after``) until its terminal event.

        A dropped connection is resumed from the last event received (``Last-Event-ID``):
        no event is missed or repeated.
        """
        last_id = after
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with aconnect_sse(
                    self._http, "GET", f"/api/jobs/{job_id}/events", headers=headers
                ) as source:
                    raise_for_error(source.response)
                    async for message in source.aiter_sse():
                        failures = 0
                        if not message.data:
                            # A keep-alive comment: httpx-sse reports it as an empty event
                            # once the stream has had an id; a browser dispatches nothing.
                            continue
                        last_id = message.id or last_id
                        payload = json.loads(message.data)
                        yield Event(
                            id=message.id,
                            type=message.event,
                            job_id=payload.get("job_id"),
                            data=payload.get("data", {}),
                        )
                return
            except (httpx.TransportError, httpx.StreamError) as error:
                if failures >= len(RECONNECT_DELAYS_S):
                    raise ApiUnreachableError(
                        f"event stream of job {job_id} lost: {error}"
                    ) from error
                await asyncio.sleep(RECONNECT_DELAYS_S[failures])
                failures += 1

    async def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """The job once it reached a terminal status (WaitTimeoutError after ``timeout_s``)."""
        try:
            async with asyncio.timeout(timeout_s):
                job = await self.get(job_id)
                if job.status.is_terminal:
                    return job
                async for _event in self.events(job_id):
                    pass
                return await self.get(job_id)
        except TimeoutError:
            raise WaitTimeoutError(
                f"job {job_id} did not finish within {timeout_s} s; it keeps running"
            ) from None
