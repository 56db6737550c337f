"""Loads the Lua scripts and runs them with the common KEYS/ARGV prologue.

Lua has no ``require`` inside Redis, so ``lua/lib.lua`` is prepended to each
operation's file; the combined source is registered once per client and run
with EVALSHA (redis-py reloads it after a server restart).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from emp_queue.core.keys import Keys

OPERATIONS = (
    "submit",
    "claim",
    "heartbeat",
    "progress",
    "complete",
    "fail",
    "release",
    "cancel",
    "retry",
    "sweep",
    "register_worker",
    "deregister_worker",
)


def script_source(operation: str) -> str:
    lua = resources.files("emp_queue.core") / "lua"
    library = (lua / "lib.lua").read_text(encoding="utf-8")
    body = (lua / f"{operation}.lua").read_text(encoding="utf-8")
    return library + "\n" + body


def common_keys(keys: Keys) -> list[str]:
    """KEYS[1..14] in the order ``lib.lua`` documents."""
    return [
        keys.seq,
        keys.events,
        keys.stats,
        keys.services,
        keys.unworkable_classes,
        keys.active,
        keys.scheduled,
        keys.queue_deadlines,
        keys.terminal,
        keys.dead,
        keys.workers,
        keys.fingerprints,
        keys.events_channel,
        keys.work_channel,
    ]


class ScriptRunner:
    """Runs the queue's scripts for one namespace."""

    def __init__(self, redis: Redis, keys: Keys, *, events_maxlen: int, retention_ms: int) -> None:
        self._scripts: dict[str, AsyncScript] = {
            op: redis.register_script(script_source(op)) for op in OPERATIONS
        }
        self._keys = common_keys(keys)
        self._prologue: list[str | int] = [keys.prefix, events_maxlen, retention_ms]

    def arguments(self, *args: str | int | float) -> tuple[list[str], list[Any]]:
        return self._keys, [*self._prologue, *args]

    async def run(self, operation: str, *args: str | int | float) -> Any:
        keys, argv = self.arguments(*args)
        return await self._scripts[operation](keys=keys, args=argv)
