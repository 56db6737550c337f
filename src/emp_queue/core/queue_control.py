"""Queue control: an operator pauses, drains or resumes one service's queue, or a pool.

- ``paused`` service: its jobs are still accepted and wait (``explain`` says why); no worker
  claims them until it is resumed. Running jobs finish.
- ``draining`` service: new submissions are refused (409 ``queue_draining``); the jobs already
  waiting are claimed and run as usual, so the queue empties. Resume to accept jobs again.
- ``paused`` pool: the workers of that pool claim nothing (their running jobs finish); other
  pools keep claiming the same services.

The state is one hash (``Keys.queue_control``) that ``claim.lua`` reads once per claim for the
worker's services and pool, and ``submit.lua`` once per service per submission run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.errors import InvalidTransitionError


class QueueState(StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    DRAINING = "draining"


class ControlTarget(StrEnum):
    SERVICE = "service"
    POOL = "pool"


@dataclass(frozen=True)
class QueueControl:
    """The state an operator set on one service or pool (``OPEN``: none set)."""

    target: ControlTarget
    name: str
    state: QueueState
    since_ms: int | None = None
    by: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        """A sentence for ``explain``: why a job of this queue waits."""
        who = f" by {self.by}" if self.by else ""
        why = f" ({self.reason})" if self.reason else ""
        if self.target is ControlTarget.POOL:
            return f"pool {self.name!r} is paused{who}{why}: its workers claim nothing"
        if self.state is QueueState.PAUSED:
            return (
                f"service {self.name!r} is paused{who}{why}: its jobs wait until it is "
                f"resumed (emp queues resume {self.name})"
            )
        return f"service {self.name!r} is draining{who}{why}: new jobs are refused"


def _field(target: ControlTarget, name: str) -> str:
    return f"{target.value}:{name}"


async def set_state(
    redis: Redis,
    keys: Keys,
    target: ControlTarget,
    name: str,
    state: QueueState,
    *,
    by: str | None = None,
    reason: str | None = None,
) -> QueueControl:
    """Pause, drain or reopen (``OPEN``) a queue. After reopening, the caller wakes idle
    workers for the waiting jobs (``JobQueue.wake_idle_workers``): a script run must choose
    which ones (``lua/wake.lua``)."""
    if target is ControlTarget.POOL and state is QueueState.DRAINING:
        raise InvalidTransitionError(
            f"a pool cannot be drained, only paused: jobs name services, not pools; "
            f"drain the services instead, or pause pool {name!r}"
        )
    field = _field(target, name)
    if state is QueueState.OPEN:
        await redis.hdel(keys.queue_control, field, f"{field}|meta")
        return QueueControl(target, name, state)
    since_ms = int(time.time() * 1000)
    meta = json.dumps({"since_ms": since_ms, "by": by, "reason": reason})
    await redis.hset(keys.queue_control, mapping={field: state.value, f"{field}|meta": meta})
    return QueueControl(target, name, state, since_ms, by, reason)


def _control(target: ControlTarget, name: str, value: str, meta: str | None) -> QueueControl:
    details = json.loads(meta) if meta else {}
    return QueueControl(
        target,
        name,
        QueueState(value),
        details.get("since_ms"),
        details.get("by"),
        details.get("reason"),
    )


async def controls(redis: Redis, keys: Keys) -> list[QueueControl]:
    """Every service and pool an operator paused or drained."""
    raw: Any = await redis.hgetall(keys.queue_control)
    flat = {as_text(k): as_text(v) for k, v in raw.items()}
    found = []
    for field, value in sorted(flat.items()):
        if "|" not in field:
            target, _, name = field.partition(":")
            found.append(_control(ControlTarget(target), name, value, flat.get(f"{field}|meta")))
    return found


async def control_of(
    redis: Redis, keys: Keys, target: ControlTarget, name: str
) -> QueueControl | None:
    """The state set on one service or pool; ``None`` when it is open."""
    field = _field(target, name)
    value, meta = await redis.hmget(keys.queue_control, [field, f"{field}|meta"])
    if value is None:
        return None
    return _control(target, name, as_text(value), None if meta is None else as_text(meta))
