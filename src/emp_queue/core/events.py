"""The event stream: every transition and progress report, resumable by id.

Scripts append to one trimmed Redis Stream and publish the last id on a channel
once per run; readers use XREAD from the last id they saw, so a reconnecting
reader gets every event after it exactly once (as long as the stream still holds it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from emp_queue.core.keys import Keys, public_workflow_id
from emp_queue.core.replies import as_text
from emp_queue.models import Event as Event  # the SDK's type too: defined where it needs no Redis

STREAM_START = "0-0"
STREAM_ID_PATTERN = r"^[0-9]{1,15}-[0-9]{1,19}$"
"""An event id: milliseconds and a sequence, each within Redis' 64-bit range."""
NEW_EVENTS_ONLY = "$"


def decode_event(entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    data = json.loads(values.get("data", "{}"))
    if isinstance(data.get("workflow_id"), str):
        # Scripts write the scoped name; readers see the id the customer chose.
        data["workflow_id"] = public_workflow_id(data["workflow_id"])
    return Event(
        id=as_text(entry_id),
        type=values["type"],
        job_id=values.get("job_id") or None,
        data=data,
    )


class EventLog:
    """Reads (and, for non-job events, appends to) a namespace's event stream."""

    def __init__(self, redis: Redis, keys: Keys, *, maxlen: int) -> None:
        self._redis = redis
        self._keys = keys
        self._maxlen = maxlen

    async def append(self, event_type: str, data: dict[str, Any], job_id: str | None = None) -> str:
        """Append an event that no script produces (machine events, for instance)."""
        entry_id = await self._redis.xadd(
            self._keys.events,
            {"type": event_type, "job_id": job_id or "", "data": json.dumps(data)},
            maxlen=self._maxlen,
            approximate=True,
        )
        await self._redis.publish(self._keys.events_channel, entry_id)
        return as_text(entry_id)

    async def read(
        self, after: str = STREAM_START, *, count: int = 1000, block_ms: int | None = None
    ) -> list[Event]:
        """Events after ``after``; waits up to ``block_ms`` for the first when there are none."""
        reply: Any = await self._redis.xread(
            {self._keys.events: after}, count=count, block=block_ms
        )
        if not reply:
            return []
        _stream, entries = reply[0]
        return [decode_event(entry_id, fields) for entry_id, fields in entries]

    async def follow(
        self, after: str = NEW_EVENTS_ONLY, *, block_ms: int = 1000
    ) -> AsyncIterator[Event]:
        """Yield events forever, from just after ``after``."""
        cursor = await self.latest_id() if after == NEW_EVENTS_ONLY else after
        while True:
            for event in await self.read(cursor, block_ms=block_ms):
                cursor = event.id
                yield event

    async def latest_id(self) -> str:
        latest: Any = await self._redis.xrevrange(self._keys.events, count=1)
        return as_text(latest[0][0]) if latest else STREAM_START
