"""503 within ``answer_timeout_s`` when a request's answer does not start in time.

A frozen Redis (stopped, not down) accepts connections and never replies; redis-py then
waits for its socket and retries, and a request took 5 to 14 s to fail. This middleware
bounds the time from a request's arrival (not counting the time spent receiving its body)
to the start of its response, whatever the route awaits: past it the client gets the usual
``broker_unavailable`` 503 and the route's task is cancelled and left behind — it is never
awaited, because redis-py can swallow a cancellation that lands inside a command
(docs/decisions/0007-loops-end-on-flags.md). A submission that timed out names, in the
503's ``job_ids``, the ids its jobs may have been stored under: retrying with them returns
those jobs instead of creating second ones.

Once a response has started (an event stream, a download) the deadline no longer applies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emp_queue.api.schemas import ErrorBody

log = structlog.get_logger(__name__)

SUBMITTED_IDS = "emp_submitted_ids"
"""Key of ``request.state`` where a submit route records the ids it is storing."""


def submitted_ids(scope: Scope) -> list[str]:
    ids: list[str] = scope.get("state", {}).get(SUBMITTED_IDS, [])
    return ids


def unanswered(reason: str) -> str:
    return f"the queue's Redis/Valkey server did not answer ({reason}); retry shortly"


def broker_unavailable_body(problem: str, job_ids: list[str]) -> ErrorBody:
    """A 503's body: ``problem`` says what happened and what to do; a submission's ids are
    added, so that it can be sent again without duplicates."""
    message = problem
    if job_ids:
        shown = ", ".join(job_ids[:3]) + (", ..." if len(job_ids) > 3 else "")
        message += (
            f"; the submission may have been stored: send it again with the same ids ({shown}, "
            "listed in job_ids) to get those jobs without creating duplicates"
        )
    return ErrorBody(error="broker_unavailable", message=message, job_ids=job_ids)


class _Exchange:
    """What the route has done so far: whether it is receiving its body, whether its
    response started, and whether the middleware answered in its place."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self.client_send = send
        self.armed_at = time.monotonic()
        self.receiving = False
        self.started = False
        self.answered = False
        self.progress = asyncio.Event()

    async def receive(self) -> Message:
        self.receiving = True
        try:
            return await self._receive()
        finally:
            self.receiving = False
            self.armed_at = time.monotonic()  # the deadline counts from the body's arrival

    async def send(self, message: Message) -> None:
        if self.answered:
            return  # the middleware answered already; the late route's reply is dropped
        if message["type"] == "http.response.start":
            self.started = True
            self.progress.set()
        await self.client_send(message)


class AnswerDeadlineMiddleware:
    def __init__(
        self, app: ASGIApp, timeout_s: float | None, exempt_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.exempt_paths = exempt_paths
        """Routes bounded by limits of their own: the file upload waits for the asset store,
        whose requests have their own timeout and retries (EMP_STORAGE_TIMEOUT_S ...)."""
        self._abandoned: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.timeout_s is None or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        exchange = _Exchange(receive, send)
        route = asyncio.create_task(self._run(scope, exchange))
        started = asyncio.create_task(exchange.progress.wait())
        try:
            while not route.done() and not exchange.started:
                remaining_s = exchange.armed_at + self.timeout_s - time.monotonic()
                if exchange.receiving or remaining_s > 0:
                    await asyncio.wait(
                        [route, started], timeout=max(remaining_s, 0.0) or self.timeout_s
                    )
                    continue
                await self._answer_in_place(scope, exchange, route)
                return
        finally:
            started.cancel()
        await route  # finished, or streaming its response: the deadline is over

    async def _run(self, scope: Scope, exchange: _Exchange) -> None:
        await self.app(scope, exchange.receive, exchange.send)

    async def _answer_in_place(
        self, scope: Scope, exchange: _Exchange, route: asyncio.Task[None]
    ) -> None:
        exchange.answered = True
        route.cancel()
        self._abandoned.add(route)
        route.add_done_callback(self._forget)
        job_ids = submitted_ids(scope)
        log.warning(
            "api_answer_timeout",
            path=scope.get("path"),
            timeout_s=self.timeout_s,
            job_ids=job_ids or None,
        )
        body = broker_unavailable_body(unanswered(f"no answer within {self.timeout_s} s"), job_ids)
        payload = body.model_dump_json().encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"retry-after", b"1"),
        ]
        start = {"type": "http.response.start", "status": 503, "headers": headers}
        await exchange.client_send(start)
        await exchange.client_send({"type": "http.response.body", "body": payload})

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("api_late_request_failed", error=repr(task.exception()))
