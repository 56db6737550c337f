"""What a key may do within its role: everything, only read, or only submit and read; and,
for submitting, which services. Set with ``emp keys create --access … --service …``.

A scope narrows a role, never widens it: a read-only admin key reads everything and changes
nothing; a submit-only client key submits and follows its customer's jobs but cannot cancel
them; a key limited to services submits only jobs for those.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import HTTPException, status

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SUBMIT_PATHS = frozenset({"/api/jobs", "/api/jobs/batch", "/api/uploads"})

# WebSocket commands each access allows (the client socket; the monitor socket only reads).
READ_COMMANDS = frozenset({"subscribe_progress", "unsubscribe_progress", "get_job_status",
                           "heartbeat"})  # fmt: skip
SUBMIT_COMMANDS = READ_COMMANDS | {"submit_job"}


class Access(StrEnum):
    FULL = "full"
    READ = "read"
    """GET requests only; on the client socket, following and asking about jobs."""
    SUBMIT = "submit"
    """What ``read`` allows, plus submitting jobs (``POST /api/jobs``, ``submit_job``) and
    uploading their input files (``POST /api/uploads``)."""


def forbidden(access: Access, what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"this key's access is {access.value!r}: it may not {what}; use a key with more "
        "access (emp keys create --access full)",
    )


def check_request(access: Access, method: str, path: str) -> None:
    """Refuse (403) an HTTP request the key's access does not allow."""
    if access is Access.FULL or method in READ_METHODS:
        return
    if access is Access.SUBMIT and method == "POST" and path in SUBMIT_PATHS:
        return
    raise forbidden(access, f"{method} {path}")


def allows_command(access: Access, command_type: str) -> bool:
    if access is Access.FULL:
        return True
    allowed = READ_COMMANDS if access is Access.READ else SUBMIT_COMMANDS
    return command_type in allowed


def check_service(services: frozenset[str], service: str) -> None:
    """Refuse (403) a job for a service outside the key's list (an empty list: any)."""
    if services and service not in services:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this key submits jobs for {', '.join(sorted(services))} only, not {service!r}",
        )
