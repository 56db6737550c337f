"""``GET /api/audit``: the audit log of operator actions and key changes (admin keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from emp_queue.api.audit import AuditLog, AuditPageOut
from emp_queue.api.auth import Admin
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.state import State

router = APIRouter(prefix="/api", tags=["audit"], responses=KEYED_ERRORS)


@router.get("/audit", summary="Read the audit log")
async def read_audit(
    _caller: Admin,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        str | None,
        Query(pattern=r"^\d{1,20}-\d{1,20}$", description="`next_cursor` of the previous page."),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            pattern=r"^[a-z_]+\.([a-z_]+)?$",
            description="One action (`job.cancel`) or a family (`job.`, `key.`).",
        ),
    ] = None,
) -> AuditPageOut:
    """Who did what, to which job, worker, machine, service or key, when and from where —
    newest first: cancel, retry, requeue, evict, machine removal, service restart (every
    authenticated attempt, with the HTTP status it got), and API key creation and revocation."""
    log = AuditLog(state.queue.redis, state.queue.keys)
    return await log.page(before=before, limit=limit, action=action)
