"""The audit log: who did what to which job, worker, machine or key, when and from where.

Operator actions through the API are recorded by :class:`AuditMiddleware` from the route
that ran (table :data:`AUDITED_ROUTES`), so no route has to remember to log itself; key
changes are recorded by :class:`~emp_queue.api.key_store.ApiKeyStore`. Entries go to one
Redis Stream per namespace, appended and never edited, read newest first by
``GET /api/audit`` (admin keys). Every authenticated attempt is recorded with its HTTP
status, refusals included: "who tried to cancel job x" is a question an audit answers.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text

PRINCIPAL_SCOPE_KEY = "emp_principal"
"""Where :func:`emp_queue.api.auth.authenticated` leaves the caller in the request's scope."""

_SEGMENT = r"([^/]+)"

AUDITED_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(rf"^/api/jobs/{_SEGMENT}/cancel$"), "job.cancel"),
    ("DELETE", re.compile(rf"^/api/jobs/{_SEGMENT}$"), "job.delete"),
    ("POST", re.compile(rf"^/api/customers/{_SEGMENT}/erase$"), "customer.erase"),
    ("POST", re.compile(rf"^/api/jobs/{_SEGMENT}/retry$"), "job.retry"),
    ("POST", re.compile(rf"^/api/dead-letters/{_SEGMENT}/requeue$"), "job.requeue"),
    ("DELETE", re.compile(rf"^/api/workers/{_SEGMENT}$"), "worker.evict"),
    ("DELETE", re.compile(rf"^/api/machines/{_SEGMENT}$"), "machine.remove"),
    ("POST", re.compile(r"^/api/(schedules)$"), "schedule.create"),
    ("DELETE", re.compile(rf"^/api/schedules/{_SEGMENT}$"), "schedule.delete"),
    ("POST", re.compile(rf"^/api/queues/{_SEGMENT}/pause$"), "queue.pause"),
    ("POST", re.compile(rf"^/api/queues/{_SEGMENT}/drain$"), "queue.drain"),
    ("POST", re.compile(rf"^/api/queues/{_SEGMENT}/resume$"), "queue.resume"),
    ("POST", re.compile(rf"^/api/pools/{_SEGMENT}/pause$"), "pool.pause"),
    ("POST", re.compile(rf"^/api/pools/{_SEGMENT}/resume$"), "pool.resume"),
    ("PUT", re.compile(rf"^/api/customers/{_SEGMENT}$"), "customer.policy_set"),
    ("DELETE", re.compile(rf"^/api/customers/{_SEGMENT}$"), "customer.policy_remove"),
    (
        "POST",
        re.compile(rf"^/api/machines/{_SEGMENT}/services/{_SEGMENT}/restart$"),
        "service.restart",
    ),
)
"""Method, path and the action name of every operator action the API records."""


class AuditEntry(BaseModel):
    """One recorded action."""

    id: str = Field(description="Stream entry id; pass it as `before` for the next page.")
    ts: int = Field(description="When it happened (ms since the epoch).")
    action: str = Field(description="`job.cancel`, `worker.evict`, `key.create`...")
    target: str = Field(description="What it acted on: a job, worker, machine or key id.")
    actor: str = Field(description="The API key id, or who ran `emp keys` (user@host).")
    role: str | None = Field(description="The acting key's role (null outside the API).")
    source: str = Field(description="The caller's address, or the command it ran.")
    status: int | None = Field(description="The API's HTTP status (null outside the API).")
    detail: dict[str, Any] = Field(default_factory=dict)


class AuditPageOut(BaseModel):
    entries: list[AuditEntry]
    next_cursor: str | None = Field(description="`before` for older entries; null at the end.")


@dataclass(frozen=True)
class AuditLog:
    """Appends to and reads the namespace's audit stream."""

    redis: Redis
    keys: Keys

    async def append(
        self,
        action: str,
        target: str,
        *,
        actor: str,
        source: str,
        role: str | None = None,
        status: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> str:
        fields = {
            "ts": str(int(time.time() * 1000)),
            "action": action,
            "target": target,
            "actor": actor,
            "role": role or "",
            "source": source,
            "status": "" if status is None else str(status),
            "detail": json.dumps(detail or {}),
        }
        return as_text(await self.redis.xadd(self.keys.audit, fields))  # type: ignore[arg-type]

    async def page(
        self, *, before: str | None = None, limit: int = 100, action: str | None = None
    ) -> AuditPageOut:
        """Newest first; ``action`` keeps one action, or a family with a trailing dot
        (``job.``)."""
        entries: list[AuditEntry] = []
        cursor = entry_before(before) if before else "+"
        while cursor is not None and len(entries) < limit:
            batch: Any = await self.redis.xrevrange(
                self.keys.audit, max=cursor, min="-", count=limit * 2
            )
            if not batch:
                return AuditPageOut(entries=entries, next_cursor=None)
            for entry_id, fields in batch:
                entry = decode_entry(entry_id, fields)
                if matches(entry.action, action):
                    entries.append(entry)
                    if len(entries) == limit:
                        return AuditPageOut(entries=entries, next_cursor=entry.id)
            cursor = entry_before(as_text(batch[-1][0]))
        return AuditPageOut(entries=entries, next_cursor=None)


MAX_ID_PART = 2**64 - 1


def entry_before(entry_id: str) -> str | None:
    """The largest stream id below ``entry_id`` (None below the first possible one). Done
    here rather than with XREVRANGE's ``(`` prefix, which Redis refuses for ``0-0`` and which
    cannot express ids past the 64-bit range a client may send."""
    ms, seq = (int(part) for part in entry_id.split("-"))
    if ms > MAX_ID_PART:
        return "+"
    if seq > MAX_ID_PART:
        seq = MAX_ID_PART + 1
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{MAX_ID_PART}" if ms > 0 else None


def local_actor() -> str:
    """Who runs this process, for changes made outside the API (``emp keys``): user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry and no USER variable
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def matches(entry_action: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    return entry_action.startswith(wanted) if wanted.endswith(".") else entry_action == wanted


def decode_entry(entry_id: Any, fields: dict[Any, Any]) -> AuditEntry:
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    return AuditEntry(
        id=as_text(entry_id),
        ts=int(values["ts"]),
        action=values["action"],
        target=values["target"],
        actor=values["actor"],
        role=values.get("role") or None,
        source=values.get("source", ""),
        status=int(values["status"]) if values.get("status") else None,
        detail=json.loads(values.get("detail") or "{}"),
    )


def audited_action(method: str, path: str) -> tuple[str, str] | None:
    """The action and target of a request to an audited route, or None."""
    for route_method, pattern, action in AUDITED_ROUTES:
        found = pattern.match(path) if method == route_method else None
        if found:
            return action, "/".join(found.groups())
    return None


class AuditMiddleware:
    """Records each authenticated request to an audited route once it has been answered."""

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        audited = (
            audited_action(scope["method"], scope["path"]) if scope["type"] == "http" else None
        )
        if audited is None:
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording_send)
        principal = scope.get("state", {}).get(PRINCIPAL_SCOPE_KEY)
        if principal is None:
            return  # refused before anyone was identified: nothing to attribute
        action, target = audited
        client = scope.get("client")
        await self.log.append(
            action,
            target,
            actor=principal.key_id or "anonymous",
            role=principal.role.value,
            source=client[0] if client else "unknown",
            status=status[0] if status else None,
        )
