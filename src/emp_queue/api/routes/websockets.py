"""WebSockets ``/ws/client/{client_id}`` and ``/ws/monitor/{monitor_id}``: the original's protocol.

Each socket runs two tasks in one TaskGroup: the loop that executes the commands it receives,
and a pump that follows the event stream from a cursor (through the replica's shared reader,
:mod:`emp_queue.api.event_hub`) and forwards the events the socket wants.
Both send under one lock, and the pump decides what to forward under it too, so a reply
(``job_submitted``) always precedes its job's events and a subscription made by a command
covers every event not yet forwarded. When the peer goes away the command loop returns and
the pump is cancelled with it. Keepalive is the WebSocket ping/pong uvicorn runs
(``ws_ping_interval``), as the original did with protocol pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, cast

import structlog
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from pydantic import TypeAdapter, ValidationError
from redis.exceptions import ResponseError
from starlette.websockets import WebSocketState

from emp_queue.api.audit import AuditLog
from emp_queue.api.auth import ANONYMOUS_ADMIN, Principal, bearer_secret
from emp_queue.api.key_scope import allows_command
from emp_queue.api.key_store import Role
from emp_queue.api.routes.events import is_terminal
from emp_queue.api.routes.jobs import count_submitted, for_caller, job_out, no_such_job, owned
from emp_queue.api.schemas import JobOut, QueueDepthOut, WorkerOut
from emp_queue.api.state import ApiState
from emp_queue.api.ws_protocol import (
    BROKER_ERRORS,
    CLIENT_COMMANDS,
    DEFAULT_JOBS_PER_STATUS,
    JOB_ID,
    MAX_RESUMED_JOBS,
    MONITOR_COMMANDS,
    STREAM_ID,
    TOPICS,
    CancelJob,
    DelegatedJobResult,
    FullState,
    GetJobStatus,
    Heartbeat,
    MonitorConnect,
    ProtocolError,
    RequestFullState,
    SubmitJob,
    Subscribe,
    SubscribeProgress,
    UnsubscribeProgress,
    as_protocol_error,
    error_message,
    event_message,
    expand_topics,
    parse_strict,
    reply,
    unknown_topics,
)
from emp_queue.core.events import Event
from emp_queue.errors import EmpError, JobNotFoundError
from emp_queue.models import Job, JobStatus
from emp_queue.telemetry.tracing import traceparent_of

log = structlog.get_logger(__name__)

router = APIRouter()

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
MAX_CLOSE_REASON_BYTES = 123
SUBPROTOCOL = "emp"
"""Offered with ``bearer.<key>`` in ``Sec-WebSocket-Protocol`` (the way a browser can send a
key without putting it in the URL); the server accepts this one, never the key."""
KEY_SUBPROTOCOL_PREFIX = "bearer."


class KeyRevokedError(Exception):
    """The socket's key was revoked while it was open: the socket is closed."""


READ_COUNT = 500
BLOCK_MS = 1000


class Session(ABC):
    """One accepted socket: its commands, its event pump and the lock they share."""

    kind: str
    commands: TypeAdapter[Any]

    def __init__(self, websocket: WebSocket, state: ApiState, principal: Principal, name: str):
        self.websocket = websocket
        self.state = state
        self.principal = principal
        self.name = name
        self._lock = asyncio.Lock()
        self._open = True

    @abstractmethod
    def wants(self, event: Event) -> bool: ...

    @abstractmethod
    async def render(self, event: Event) -> dict[str, Any]: ...

    @abstractmethod
    async def execute(self, command: Any) -> None: ...

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send_json(message)

    async def serve(self, cursor: str) -> None:
        log.info("ws_connected", kind=self.kind, name=self.name, key_id=self.principal.key_id)
        try:
            async with asyncio.TaskGroup() as tasks:
                pump = tasks.create_task(self._pump(cursor), name=f"ws-{self.kind}-{self.name}")
                watch = tasks.create_task(self._watch_key(), name=f"ws-key-{self.name}")
                try:
                    await self._receive_commands()
                finally:
                    self._open = False
                    pump.cancel()
                    watch.cancel()
        except* WebSocketDisconnect:
            pass  # the peer left while an event was being sent to it: nothing left to do
        except* KeyRevokedError:
            log.info("ws_key_revoked", kind=self.kind, name=self.name, key_id=self.principal.key_id)
        except* BROKER_ERRORS as group:
            log.warning("ws_broker_unavailable", kind=self.kind, name=self.name, error=str(group))
            await close(self.websocket, INTERNAL_ERROR, "the queue's Redis did not answer")
        log.info("ws_disconnected", kind=self.kind, name=self.name)

    async def _pump(self, cursor: str) -> None:
        # The flag as well as the cancellation: redis-py 8 can swallow the cancellation of a
        # blocking XREAD and return an empty reply, which would keep this loop alive.
        async with self.state.hub.follow(cursor) as follower:
            while self._open:
                batch = await follower.read(block_ms=BLOCK_MS, count=READ_COUNT)
                if not batch:
                    continue
                async with self._lock:
                    for event in batch:
                        if self.wants(event):
                            await self.send(await self.render(event))

    async def _watch_key(self) -> None:
        """Close the socket within ``revocation_check_s`` (+ the key cache) of the key's
        revocation, whether or not the client sends anything."""
        while self._open:
            await asyncio.sleep(self.state.settings.revocation_check_s)
            await self._check_key()

    async def _check_key(self) -> None:
        if not await self.state.authenticator.is_current(self.principal):
            self._open = False
            await close(self.websocket, POLICY_VIOLATION, "this API key was revoked")
            raise KeyRevokedError(self.principal.key_id)

    async def _receive_commands(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            await self._handle(message.get("text"), message.get("bytes"))

    async def _handle(self, text: str | None, data: bytes | None) -> None:
        """One message, charged to the key as a REST request is and held to the same size
        limit; any problem is answered with an ``error`` message and the socket stays."""
        body: Any = None
        try:
            size = len(data or b"") if text is None else len(text.encode())
            limit = self.state.settings.max_body_bytes
            if size > limit:
                raise ProtocolError(
                    "content_too_large", f"the message is larger than {limit} bytes; send less"
                )
            await self._check_key()
            await self._charge()
            if text is None:
                text = (data or b"").decode("utf-8", errors="strict")
            body = parse_strict(text)
            command = self._validate(body)
            async with self._lock:
                await self._execute_reporting(command)
        except UnicodeDecodeError:
            await self.send(error_message(ProtocolError("invalid_json", "send UTF-8 JSON text")))
        except ProtocolError as error:
            await self.send(error_message(error, message_id_of(body)))

    async def _charge(self) -> None:
        try:
            await self.state.authenticator.charge(self.principal)
        except HTTPException as error:
            raise as_protocol_error(error) from None

    def _validate(self, body: Any) -> Any:
        try:
            return self.commands.validate_python(body)
        except ValidationError as error:
            raise ProtocolError.from_validation(error, "the message") from None

    async def _execute_reporting(self, command: Any) -> None:
        try:
            await self.execute(command)
        except (HTTPException, EmpError, ResponseError, *BROKER_ERRORS) as error:
            raise as_protocol_error(error) from None


def message_id_of(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("message_id"), str):
        return cast(str, body["message_id"])
    return None


class ClientSession(Session):
    """A client's socket: it submits, follows and cancels its own customer's jobs."""

    kind = "client"
    commands = CLIENT_COMMANDS

    def __init__(self, websocket: WebSocket, state: ApiState, principal: Principal, name: str):
        super().__init__(websocket, state, principal, name)
        self.jobs: set[str] = set()
        """Jobs whose events this socket receives; a job leaves after its terminal event."""

    async def follow_again(self, job_ids: list[str]) -> None:
        """Follow these jobs again after a reconnect (the caller's own; others are ignored,
        as an unknown job would be). A job that finished while the socket was away still
        gets its terminal event, which lies after the resume point."""
        for job_id in job_ids:
            try:
                job = await self.state.queue.get(job_id)
            except JobNotFoundError:
                continue
            if self.principal.sees_customer(job.customer_id):
                self.jobs.add(job.id)

    def wants(self, event: Event) -> bool:
        # `job_submitted` is the reply to `submit_job`, sent once per command, never twice.
        return event.job_id in self.jobs and event.type != "job_submitted"

    async def render(self, event: Event) -> dict[str, Any]:
        assert event.job_id is not None
        extra: dict[str, Any] = {}
        if event.type == "complete_job":
            # The original's complete_job carried the result; the stream entry does not.
            extra["result"] = await self._result(event.job_id)
        if is_terminal(event):
            self.jobs.discard(event.job_id)
        return event_message(event, **extra)

    async def _result(self, job_id: str) -> Any:
        try:
            return (await self.state.queue.get(job_id)).result
        except JobNotFoundError:
            return None

    async def execute(self, command: Any) -> None:
        if not allows_command(self.principal.access, command.type):
            raise ProtocolError(
                "forbidden",
                f"this key's access is {self.principal.access.value!r}: it may not send "
                f"{command.type}",
            )
        match command:
            case SubmitJob():
                await self._submit(command)
            case SubscribeProgress(job_id=job_id):
                job = await self._visible_job(job_id)
                if not job.status.is_terminal:
                    self.jobs.add(job.id)
                await self.send(
                    reply("subscribed", job_id=job.id, status=job.status, progress=job.progress)
                )
            case UnsubscribeProgress(job_id=job_id, id=message_id):
                self.jobs.discard(job_id)
                await self.send(reply("unsubscribed", job_id=job_id, message_id=message_id))
            case GetJobStatus(job_id=job_id, id=message_id):
                job = await self._visible_job(job_id)
                snapshot = job_out(job).model_dump(mode="json")
                await self.send(
                    reply("job_status", job_id=job.id, job=snapshot, message_id=message_id)
                )
            case Heartbeat(id=message_id):
                await self.send(reply("heartbeat_ack", client_id=self.name, message_id=message_id))
            case CancelJob(job_id=job_id, reason=reason):
                # Its `job_cancelled` event is the answer: following the job delivers it once.
                job = await self._visible_job(job_id)
                with self._following(job.id):
                    await self.state.queue.cancel(job.id, reason)
                await self._audit("job.cancel", job.id)
            case DelegatedJobResult(job_id=job_id, result=result):
                await self._deliver(job_id, result)
                await self._audit("job.deliver", job_id)

    async def _audit(self, action: str, job_id: str) -> None:
        """An operator action over the socket, recorded as the REST routes' are."""
        client = self.websocket.client
        await AuditLog(self.state.queue.redis, self.state.queue.keys).append(
            action,
            job_id,
            actor=self.principal.key_id or "anonymous",
            role=self.principal.role.value,
            source=f"{client.host if client else 'unknown'} (socket {self.name})",
        )

    async def _submit(self, command: SubmitJob) -> None:
        job_id = command.message_id or str(uuid.uuid4())
        try:
            spec = for_caller(command.job_spec(job_id), self.principal)
        except ValidationError as error:
            raise ProtocolError.from_validation(error, "submit_job") from None
        await self.state.services.check([spec.service_required])
        with self._following(job_id), contextlib.ExitStack() as traced:
            if self.state.tracing is not None:
                span = traced.enter_context(
                    self.state.tracing.request("WS", "submit_job", spec.traceparent)
                )
                spec = spec.model_copy(update={"traceparent": traceparent_of(span)})
            (job,) = owned([await self.state.queue.submit(spec)], self.principal)
        if job.status.is_terminal:
            self.jobs.discard(job.id)
        count_submitted(self.state, [job])
        await self.send(
            reply("job_submitted", job_id=job.id, message_id=command.message_id, status=job.status)
        )

    @contextlib.contextmanager
    def _following(self, job_id: str) -> Iterator[None]:
        """Follow a job from before a command runs (so the pump cannot pass its first event
        by), and stop again if the command fails."""
        was_followed = job_id in self.jobs
        self.jobs.add(job_id)
        try:
            yield
        except BaseException:
            if not was_followed:
                self.jobs.discard(job_id)
            raise

    async def _visible_job(self, job_id: str) -> Job:
        try:
            job = await self.state.queue.get(job_id)
        except JobNotFoundError:
            job = None
        if job is None or not self.principal.sees_customer(job.customer_id):
            raise ProtocolError("not_found", str(no_such_job(job_id).detail))
        return job

    async def _deliver(self, job_id: str, result: Any) -> None:
        """An admin delivers a result produced outside the fleet; ``complete_job`` follows."""
        if self.principal.role is not Role.ADMIN:
            raise ProtocolError("forbidden", "delegated_job_result needs an admin key")
        job = await self._visible_job(job_id)
        with self._following(job.id):
            await self.state.queue.deliver(job.id, result, f"client {self.name}")


class MonitorSession(Session):
    """An admin's monitor: every event it subscribed to, and the state on request."""

    kind = "monitor"
    commands = MONITOR_COMMANDS

    def __init__(self, websocket: WebSocket, state: ApiState, principal: Principal, name: str):
        super().__init__(websocket, state, principal, name)
        self.event_types: frozenset[str] | None = None
        """What ``subscribe`` asked for; None (no subscription yet): every event."""

    def wants(self, event: Event) -> bool:
        return self.event_types is None or event.type in self.event_types

    async def render(self, event: Event) -> dict[str, Any]:
        return event_message(event)

    async def execute(self, command: Any) -> None:
        match command:
            case Subscribe(topics=topics):
                if unknown := unknown_topics(topics):
                    raise ProtocolError(
                        "unknown_topic",
                        f"unknown topics {unknown}: use {sorted(TOPICS)} or event types such "
                        "as job_assigned or worker_connected",
                    )
                self.event_types = expand_topics(topics)
                await self.send(reply("subscribed", monitor_id=self.name, topics=topics))
            case RequestFullState(jobs_per_status=limit, statuses=statuses):
                await self._send_full_state(limit, statuses)
            case MonitorConnect(request_full_state=wants_state):
                await self.send(reply("monitor_connected", monitor_id=self.name))
                if wants_state:
                    await self._send_full_state(DEFAULT_JOBS_PER_STATUS)
            case Heartbeat(id=message_id):
                await self.send(reply("heartbeat_ack", monitor_id=self.name, message_id=message_id))

    async def _send_full_state(
        self, jobs_per_status: int, statuses: list[JobStatus] | None = None
    ) -> None:
        queue = self.state.queue
        last_event_id = await queue.events.latest_id()
        depths = await queue.queue_depths()
        jobs: dict[JobStatus, list[JobOut]] = {}
        wanted = set(JobStatus if statuses is None else statuses)
        for status in JobStatus:
            # A status no job has needs no page: listing one filters the job index, and a
            # status with no match would read a whole scan's worth of it for nothing.
            if status not in wanted or not any(d.counts.get(status, 0) for d in depths):
                jobs[status] = []
                continue
            page = await queue.list_jobs(status=status, limit=jobs_per_status)
            jobs[status] = [job_out(job) for job in page.jobs]
        state = FullState(
            last_event_id=last_event_id,
            workers=[WorkerOut.model_validate(w) for w in await queue.workers()],
            queues=[QueueDepthOut.model_validate(d) for d in depths],
            jobs=jobs,
            jobs_per_status=jobs_per_status,
        )
        data = state.model_dump(mode="json")
        await self.send(reply("full_state_snapshot", monitor_id=self.name, data=data))


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is WebSocketState.CONNECTED:
        encoded = reason.encode()[:MAX_CLOSE_REASON_BYTES]
        await websocket.close(code, encoded.decode(errors="ignore"))


def socket_key(websocket: WebSocket) -> str | None:
    """The key of a socket: ``Authorization: Bearer``, a ``bearer.<key>`` subprotocol (what a
    browser can send), or the original's ``?token=`` (kept for its clients; redacted from the
    server's logs by :mod:`emp_queue.api.log_redaction`)."""
    secret = bearer_secret(websocket)
    if secret is not None:
        return secret
    for offered in websocket.scope.get("subprotocols", []):
        if offered.startswith(KEY_SUBPROTOCOL_PREFIX) and len(offered) > len(
            KEY_SUBPROTOCOL_PREFIX
        ):
            return str(offered[len(KEY_SUBPROTOCOL_PREFIX) :])
    return websocket.query_params.get("token")


def accepted_subprotocol(websocket: WebSocket) -> str | None:
    return SUBPROTOCOL if SUBPROTOCOL in websocket.scope.get("subprotocols", []) else None


async def authenticate(
    state: ApiState, websocket: WebSocket, roles: tuple[Role, ...]
) -> tuple[Principal | None, ProtocolError | None, int]:
    """The caller, or why the socket must be refused and with which close code."""
    token = socket_key(websocket)
    if token is None:
        if state.settings.dev_anonymous:
            return ANONYMOUS_ADMIN, None, 0
        problem = (
            "this socket needs an API key: offer the subprotocols "
            f"['{SUBPROTOCOL}', '{KEY_SUBPROTOCOL_PREFIX}<key>'], or send Authorization: Bearer"
        )
        return None, ProtocolError("unauthorized", problem), POLICY_VIOLATION
    address = websocket.client.host if websocket.client is not None else None
    try:
        principal = await state.authenticator.authenticate(token, address)
    except HTTPException as error:
        code = TRY_AGAIN_LATER if error.status_code == 429 else POLICY_VIOLATION
        return None, as_protocol_error(error), code
    if principal.role not in roles:
        allowed = " or ".join(role.value for role in roles)
        problem = f"a {principal.role.value} key may not open this socket; it needs {allowed}"
        return None, ProtocolError("forbidden", problem), POLICY_VIOLATION
    return principal, None, 0


async def refuse(websocket: WebSocket, error: ProtocolError, code: int) -> None:
    """Accepted first, so the client sees the error and the close code, not a bare 403."""
    await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    await websocket.send_json(error_message(error))
    await close(websocket, code, error.message)


async def admitted(
    websocket: WebSocket, state: ApiState, roles: tuple[Role, ...]
) -> Principal | None:
    """The socket's caller if it may open it and has a stream to spare; else the socket is
    refused (with the reason and close code) and None returned."""
    principal, error, code = await authenticate(state, websocket, roles)
    if principal is None:
        assert error is not None
        await refuse(websocket, error, code)
        return None
    try:
        state.authenticator.streams.check(principal)
    except HTTPException as error:
        await refuse(websocket, as_protocol_error(error), TRY_AGAIN_LATER)
        return None
    return principal


def api_state(websocket: WebSocket) -> ApiState:
    return cast(ApiState, websocket.app.state.emp)


@router.websocket("/ws/client/{client_id}")
async def client_socket(
    websocket: WebSocket,
    client_id: str,
    last_event_id: str | None = None,
    jobs: str | None = None,
) -> None:
    """Resume after a dropped connection with ``last_event_id`` (the last ``event_id`` seen)
    and ``jobs`` (comma-separated ids being followed): their events since then are sent
    again, in order, none twice; without them events start at the connection."""
    state = api_state(websocket)
    principal = await admitted(websocket, state, (Role.CLIENT, Role.ADMIN))
    if principal is None:
        return
    problem = resume_problem(last_event_id, jobs)
    if problem is not None:
        await refuse(websocket, ProtocolError("invalid_request", problem), POLICY_VIOLATION)
        return
    # The cursor is taken before the handshake completes: nothing after it is missed.
    cursor = last_event_id or await state.queue.events.latest_id()
    session = ClientSession(websocket, state, principal, client_id)
    await session.follow_again(jobs.split(",") if jobs else [])
    with state.authenticator.streams.hold(principal):
        await websocket.accept(subprotocol=accepted_subprotocol(websocket))
        await websocket.send_json(
            reply("connection_established", client_id=client_id, resumed_jobs=sorted(session.jobs))
        )
        await session.serve(cursor)


def resume_problem(last_event_id: str | None, jobs: str | None) -> str | None:
    if last_event_id is not None and not STREAM_ID.fullmatch(last_event_id):
        return f"last_event_id {last_event_id[:40]!r} is not an event id like 1700000000000-0"
    if jobs is not None:
        ids = jobs.split(",")
        if len(ids) > MAX_RESUMED_JOBS:
            return f"jobs lists {len(ids)} ids; resume at most {MAX_RESUMED_JOBS} per socket"
        if not all(JOB_ID.fullmatch(job_id) for job_id in ids):
            return "jobs must be comma-separated job ids"
        if last_event_id is None:
            return "jobs needs last_event_id: the event after which to resume"
    return None


@router.websocket("/ws/monitor/{monitor_id}")
async def monitor_socket(
    websocket: WebSocket,
    monitor_id: str,
    last_event_id: str | None = None,
) -> None:
    """Without ``last_event_id`` events start at the connection; with it, right after it."""
    state = api_state(websocket)
    principal = await admitted(websocket, state, (Role.ADMIN,))
    if principal is None:
        return
    if last_event_id is not None and not STREAM_ID.fullmatch(last_event_id):
        problem = f"last_event_id {last_event_id[:40]!r} is not an event id like 1700000000000-0"
        await refuse(websocket, ProtocolError("invalid_request", problem), POLICY_VIOLATION)
        return
    cursor = last_event_id or await state.queue.events.latest_id()
    with state.authenticator.streams.hold(principal):
        await websocket.accept(subprotocol=accepted_subprotocol(websocket))
        await MonitorSession(websocket, state, principal, monitor_id).serve(cursor)
