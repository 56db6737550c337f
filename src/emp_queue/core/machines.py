"""Machines in Redis: their records, log streams and control channel.

A machine agent publishes its :class:`MachineRecord` (``publish``) and ships its services'
log lines (``ship_logs``); the API lists machines, reads logs across machines, relays operator
actions (``send_control``) and removes a dead machine (``remove``: its workers are evicted
and their jobs requeued at once).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis

from emp_queue.core.events import EventLog
from emp_queue.core.keys import Keys
from emp_queue.core.queue import JobQueue
from emp_queue.core.replies import as_text
from emp_queue.errors import MachineNotFoundError
from emp_queue.machine_models import LogLine, MachinePhase, MachineRecord
from emp_queue.models import EventType

SHIP_LAG_MS = 60_000
"""The longest a log line may wait in an agent before it is shipped."""
__all__ = ["LEVELS", "MachineNotFoundError", "MachineRegistry"]

LEVELS = ("debug", "info", "warning", "error", "critical")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _rank(level: str) -> int:
    """A level's place in ``LEVELS``; an unknown level ranks as ``info``."""
    return LEVELS.index(level) if level in LEVELS else 1


class MachineRegistry:
    """Machine records, logs and control for one queue namespace."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        events: EventLog,
        *,
        timeout_s: float = 30.0,
        logs_maxlen: int = 5000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.events = events
        self.timeout_s = timeout_s
        self.logs_maxlen = logs_maxlen

    # Agent side ---------------------------------------------------------------
    async def publish(
        self, record: MachineRecord, event: EventType = EventType.MACHINE_UPDATE, **extra: Any
    ) -> MachineRecord:
        """Store ``record`` as the machine's state and announce it with ``event``."""
        stamped = record.model_copy(update={"updated_at": _now_ms()})
        document = stamped.model_dump(mode="json", exclude={"online"})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.machine(stamped.machine_id), json.dumps(document))
            pipe.zadd(self.keys.machines, {stamped.machine_id: stamped.updated_at})
            await pipe.execute()
        await self.events.append(str(event), {"machine": document, **extra})
        return stamped

    async def ship_logs(self, lines: Sequence[LogLine]) -> None:
        """Append log lines to their machines' bounded streams (one round trip)."""
        if not lines:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for line in lines:
                fields = {
                    "ts": line.ts,
                    "service": line.service,
                    "level": line.level,
                    "message": line.message,
                }
                pipe.xadd(
                    self.keys.machine_logs(line.machine_id),
                    fields,  # type: ignore[arg-type]
                    maxlen=self.logs_maxlen,
                    approximate=True,
                )
            await pipe.execute()

    # Operator side ------------------------------------------------------------
    async def get(self, machine_id: str) -> MachineRecord:
        raw = await self.redis.get(self.keys.machine(machine_id))
        if raw is None:
            raise MachineNotFoundError(f"no machine {machine_id!r} is known")
        return self._decode(raw)

    async def all(self) -> list[MachineRecord]:
        """Every known machine, most recently heard from first."""
        ids: Any = await self.redis.zrevrange(self.keys.machines, 0, -1)
        if not ids:
            return []
        raws = await self.redis.mget([self.keys.machine(as_text(i)) for i in ids])
        return [self._decode(raw) for raw in raws if raw is not None]

    def _decode(self, raw: bytes | str) -> MachineRecord:
        record = MachineRecord.model_validate_json(raw)
        silent = _now_ms() - record.updated_at > self.timeout_s * 1000
        stopped = record.phase in (MachinePhase.STOPPED, MachinePhase.FAILED)
        return record.model_copy(update={"online": not (silent or stopped)})

    async def send_control(self, machine_id: str, action: dict[str, Any]) -> int:
        """Publish an operator action to the machine's agent; returns how many agents heard it."""
        await self.get(machine_id)
        return int(
            await self.redis.publish(self.keys.machine_control(machine_id), json.dumps(action))
        )

    async def remove(self, machine_id: str, queue: JobQueue) -> int:
        """Forget a machine, evicting its workers; returns how many jobs were requeued."""
        record = await self.get(machine_id)
        workers = set(record.workers)
        workers.update(w.worker_id for w in await queue.workers() if w.machine_id == machine_id)
        requeued = 0
        for worker_id in sorted(workers):
            requeued += await queue.evict_worker(worker_id, "machine_removed")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.machine(machine_id), self.keys.machine_logs(machine_id))
            pipe.zrem(self.keys.machines, machine_id)
            await pipe.execute()
        await self.events.append(
            str(EventType.MACHINE_SHUTDOWN),
            {"machine_id": machine_id, "reason": "removed", "requeued": requeued},
        )
        return requeued

    async def logs(
        self,
        *,
        machine_ids: Iterable[str] | None = None,
        service: str | None = None,
        level: str | None = None,
        text: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 200,
    ) -> list[LogLine]:
        """The newest ``limit`` lines matching every filter, oldest first, across machines.

        ``level`` keeps that level and above. Each machine's stream is read newest-first
        within the time range, so the cost is bounded by the stream length, never a scan.
        """
        if machine_ids is None:
            known: Any = await self.redis.zrange(self.keys.machines, 0, -1)
            machine_ids = [as_text(i) for i in known]
        floor = _rank(level) if level else 0
        needle = text.lower() if text else None
        lines: list[LogLine] = []
        for machine_id in machine_ids:
            lines.extend(
                await self._machine_logs(
                    machine_id, service, floor, needle, since_ms, until_ms, limit
                )
            )
        lines.sort(key=lambda line: (line.ts, line.id))
        return lines[-limit:]

    async def _machine_logs(
        self,
        machine_id: str,
        service: str | None,
        floor: int,
        needle: str | None,
        since_ms: int | None,
        until_ms: int | None,
        limit: int,
    ) -> list[LogLine]:
        # Entry ids are stamped when a line is shipped, never before it was logged: an id
        # below ``since_ms`` cannot hold a line from after it. Shipping lags by at most
        # SHIP_LAG_MS, which bounds the ids worth reading for ``until_ms``.
        newest = "+" if until_ms is None else str(until_ms + SHIP_LAG_MS)
        oldest = "-" if since_ms is None else str(since_ms)
        key = self.keys.machine_logs(machine_id)
        found: list[LogLine] = []
        page = max(limit * 4, 500)
        while len(found) < limit:
            entries: Any = await self.redis.xrevrange(key, newest, oldest, count=page)
            for entry_id, fields in entries:
                line = self._line(machine_id, as_text(entry_id), fields)
                if (since_ms is not None and line.ts < since_ms) or (
                    until_ms is not None and line.ts > until_ms
                ):
                    continue
                if service and line.service != service:
                    continue
                if _rank(line.level) < floor:
                    continue
                if needle and needle not in line.message.lower():
                    continue
                found.append(line)
            if len(entries) < page:
                break
            newest = "(" + as_text(entries[-1][0])
        return found[:limit]

    @staticmethod
    def _line(machine_id: str, entry_id: str, fields: dict[Any, Any]) -> LogLine:
        values = {as_text(k): as_text(v) for k, v in fields.items()}
        return LogLine(
            id=entry_id,
            ts=int(values.get("ts", entry_id.split("-")[0])),
            machine_id=machine_id,
            service=values.get("service", ""),
            level=values.get("level", "info"),
            message=values.get("message", ""),
        )
