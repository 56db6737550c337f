"""A fake generic REST service: echo, status codes, binary bodies, redirects and async jobs.

What the ``rest-sync``/``rest-async`` connectors meet in the wild, in one small app:

* ``ANY /echo`` → the request as JSON (method, path, query, headers, body);
* ``GET /status/{code}`` → that status with a JSON error body (``Retry-After`` on 429/503);
* ``GET /bytes/{size}`` (octet-stream), ``GET /text/{size}`` (text/plain), ``GET /large-json/{n}``;
* ``GET /slow?delay_s=`` → answers after a delay, giving up early when the client leaves;
* ``GET /redirect?to=URL`` → 302 to any URL (to test that redirects are checked);
* ``POST /jobs {"steps", "step_delay_s", "fail", "result"}`` → 202 ``{"id", "status":
  "queued", "poll_url"}``; ``GET /jobs/{id}`` → ``{"id", "status": queued|running|succeeded|
  failed|cancelled, "progress": 0..100, "output"?, "error"?}`` (404 for an unknown id);
  ``POST /jobs/{id}/cancel``. Progress follows the clock, so no background task is needed.

Every request is recorded in :attr:`FakeRest.requests`; cancels in :attr:`FakeRest.cancelled`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from emp_queue.testing.fakes.server import FakeService

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class RemoteJob:
    id: str
    steps: int
    step_delay_s: float
    fail: bool
    result: Any
    started_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False

    def view(self) -> JsonDict:
        elapsed = time.monotonic() - self.started_at
        done = (
            self.steps
            if self.step_delay_s <= 0
            else min(self.steps, int(elapsed / self.step_delay_s))
        )
        body: JsonDict = {"id": self.id, "progress": round(100 * done / self.steps, 2)}
        if self.cancelled:
            return {**body, "status": "cancelled"}
        if done < self.steps:
            return {**body, "status": "queued" if done == 0 else "running"}
        if self.fail:
            return {**body, "status": "failed", "error": "the remote model crashed on this input"}
        return {**body, "status": "succeeded", "output": self.result}


class FakeRest(FakeService):
    """State and control of the fake; ``app()`` serves it, ``running()`` runs it on loopback."""

    service_name = "rest"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, RemoteJob] = {}
        self.cancelled: list[str] = []

    def add_routes(self, app: FastAPI) -> None:
        app.middleware("http")(self._record)
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app.add_api_route("/echo", self._echo, methods=methods)
        app.add_api_route("/status/{code}", self._status, methods=methods)
        app.add_api_route("/bytes/{size}", self._bytes, methods=["GET"])
        app.add_api_route("/text/{size}", self._text, methods=["GET"])
        app.add_api_route("/large-json/{count}", self._large_json, methods=["GET"])
        app.add_api_route("/slow", self._slow, methods=["GET", "POST"])
        app.add_api_route("/redirect", self._redirect, methods=["GET"])
        app.add_api_route("/jobs", self._submit, methods=["POST"])
        app.add_api_route("/jobs/{job_id}", self._job, methods=["GET"])
        app.add_api_route("/jobs/{job_id}/cancel", self._cancel, methods=["POST"])

    async def _record(self, request: Request, call_next: Any) -> Response:
        self.requests.append(
            RecordedRequest(request.method, request.url.path, dict(request.headers))
        )
        response: Response = await call_next(request)
        return response

    async def _echo(self, request: Request) -> JsonDict:
        raw = await request.body()
        echoed: JsonDict = {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": dict(request.headers),
        }
        if request.headers.get("content-type", "").startswith("application/json") and raw:
            echoed["json"] = await request.json()
        elif raw:
            echoed["body"] = raw.decode(errors="replace")
        return echoed

    async def _status(self, code: int) -> Response:
        headers = {"Retry-After": "7"} if code in (429, 503) else {}
        body = {"error": {"message": f"the fake answers {code} as asked", "code": code}}
        return JSONResponse(body, status_code=code, headers=headers)

    async def _bytes(self, size: int) -> Response:
        data = bytes(i % 251 for i in range(size))
        return Response(data, media_type="application/octet-stream")

    async def _text(self, size: int) -> Response:
        return PlainTextResponse(("lorem ipsum " * (size // 12 + 1))[:size])

    async def _large_json(self, count: int) -> JsonDict:
        return {"items": [{"index": i, "name": f"item-{i:06d}"} for i in range(count)]}

    async def _slow(self, request: Request, delay_s: float = 5.0) -> JsonDict:
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return {"abandoned": True}
            await asyncio.sleep(0.02)
        return {"slept_s": delay_s}

    async def _redirect(self, to: str) -> Response:
        return RedirectResponse(to, status_code=302)

    async def _submit(self, request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        if not isinstance(body, dict) or not isinstance(body.get("steps", 1), int):
            return JSONResponse({"error": {"message": "'steps' must be an integer"}}, 422)
        job = RemoteJob(
            id=f"job-{uuid.uuid4().hex[:12]}",
            steps=max(1, int(body.get("steps", 1))),
            step_delay_s=float(body.get("step_delay_s", 0.0)),
            fail=bool(body.get("fail", False)),
            result=body.get("result", {"answer": 42}),
        )
        self.jobs[job.id] = job
        return JSONResponse(
            {"id": job.id, "status": "queued", "poll_url": f"/jobs/{job.id}"}, status_code=202
        )

    async def _job(self, job_id: str) -> Response:
        job = self.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": {"message": f"no job {job_id}"}}, status_code=404)
        return JSONResponse(job.view())

    async def _cancel(self, job_id: str) -> Response:
        job = self.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": {"message": f"no job {job_id}"}}, status_code=404)
        job.cancelled = True
        self.cancelled.append(job_id)
        return JSONResponse(job.view())
