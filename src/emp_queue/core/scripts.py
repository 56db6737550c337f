"""Loads the Lua operations as one Redis function library and calls them.

``lua/lib.lua`` and the files after it (``HELPERS``) hold the shared helpers; each
``lua/<operation>.lua`` becomes a function of the library, so the helpers are compiled and
created once per server rather than on every call (EVAL would rebuild them each time, and
their garbage shows up as latency). The library's name carries a hash of its source: two
versions of emp-job-queue sharing a server each use their own, and a server that lost it
(restart without persistence) gets it loaded again on the next call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from emp_queue.core.keys import Keys
from emp_queue.errors import BrokerError

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
    "evict_worker",
    "deliver",
    "delete",
    "decline_wake",
    "wake_waiting",
    "lift_caps",
    "complete_claim",
)

SHARED_BODIES = ("claim",)
"""Operations whose file another operation runs too (complete_claim runs claim's): the file is
run once, when the library loads, and returns the library function ``run_<operation>(ARGV)``
(its helpers are created once, not on every call); its operation calls it."""

ACKNOWLEDGED = frozenset(
    {"submit", "complete", "complete_claim", "fail", "cancel", "deliver", "retry"}
)
"""Operations whose success a caller is told about: with durability on, they wait for replicas."""


@dataclass(frozen=True)
class Durability:
    """``WAIT`` for ``replicas`` replicas (at most ``timeout_ms``) after an acknowledged write."""

    replicas: int
    timeout_ms: int


class ReplicaWaitError(BrokerError, RedisConnectionError):
    """A write reached the primary but too few replicas confirmed it in time.

    The primary may still lose it in a failover. It is a broker outage to the caller (a
    ``redis.exceptions.ConnectionError``): workers keep the result and send it again, the API
    answers 503. Check the replicas (``INFO replication``) or lower ``EMP_REDIS_WAIT_REPLICAS``.
    """


# Shared helpers, in load order: lib.lua (keys, batched writes, counts, events), matching.lua
# (capabilities against classes, deferrals), transitions.lua (a job's moves, the run's start
# and end), then customers.lua (fair share, caps), which uses them, waits.lua (scheduled and
# blocked jobs, paused queues), which uses those, pools.lua (pools with fallback), wake.lua
# (which idle workers a run wakes), listing.lua (the indexes of GET /api/jobs) and busy.lua
# (what complete and complete_claim share).
HELPERS = (
    "lib",
    "matching",
    "transitions",
    "customers",
    "waits",
    "pools",
    "wake",
    "listing",
    "busy",
)


OPERATION_FRAME = """redis.register_function('{function}', function(KEYS, ARGV)
begin_run(KEYS, ARGV)
begin_customers_run()
begin_waits_run()
begin_pools_run()
begin_wake_run()
begin_listing_run()
local reply = (function()
{body}
end)()
finish_run()
return reply
end)"""
"""How each operation becomes a function of the library: the per-run state reset, the
operation's file as the body, then ``finish_run()`` (``transitions.lua``: batched writes,
counts, listing moves, wake-ups and the run's notice) whatever way the body returned, so no
operation can forget it."""


def _lua(name: str) -> str:
    return (resources.files("emp_queue.core") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def library_source() -> tuple[str, str]:
    """The library's name and its source (the helpers, then one function per operation)."""
    operations = {operation: _lua(operation) for operation in OPERATIONS}
    helpers = [_lua(part) for part in HELPERS]
    digest = hashlib.sha1(OPERATION_FRAME.encode())
    for body in (*helpers, *operations.values()):
        digest.update(body.encode())
    name = f"emp_{digest.hexdigest()[:12]}"
    parts = [f"#!lua name={name}", *helpers]
    for operation in SHARED_BODIES:
        parts.append(f"local run_{operation} = (function()\n{operations[operation]}\nend)()")
        operations[operation] = f"return run_{operation}(ARGV)"
    for operation, body in operations.items():
        parts.append(OPERATION_FRAME.format(function=f"{name}_{operation}", body=body))
    return name, "\n".join(parts)


def common_keys(keys: Keys) -> list[str]:
    """KEYS[1..16] in the order ``lib.lua`` documents."""
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
        keys.jobs,
        keys.served,
        keys.totals,
    ]


class ScriptRunner:
    """Calls the queue's operations for one namespace."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        events_maxlen: int,
        retention_ms: int,
        durability: Durability | None = None,
    ) -> None:
        self._redis = redis
        self._library, self._source = library_source()
        self._keys = common_keys(keys)
        self._prologue: list[str | int] = [keys.prefix, events_maxlen, retention_ms]
        self._durability = durability if durability and durability.replicas > 0 else None
        # The arguments every call repeats, encoded once: redis-py encodes each argument of
        # each command (a busy worker's complete_and_claim sends about 35), and bytes pass
        # through its encoder at its first check (measured: 30 % of the client's CPU per call
        # went to encoding).
        self._call_head: tuple[bytes, ...] = tuple(
            str(item).encode() for item in (len(self._keys), *self._keys, *self._prologue)
        )
        self._function_names: dict[str, bytes] = {}

    @property
    def library(self) -> str:
        return self._library

    async def run(self, operation: str, *args: str | int | float) -> Any:
        name = self._function_names.get(operation)
        if name is None:
            name = self._function_names[operation] = f"{self._library}_{operation}".encode()
        call = (name, *self._call_head)
        durable = self._durability is not None and operation in ACKNOWLEDGED
        try:
            if durable:
                return await self._run_and_wait(operation, call + args)
            return await self._redis.fcall(*call, *args)  # type: ignore[arg-type]
        except ResponseError as error:
            if "function not found" not in str(error).lower():
                raise
        await self._redis.function_load(self._source, replace=True)
        if durable:
            return await self._run_and_wait(operation, call + args)
        return await self._redis.fcall(*call, *args)  # type: ignore[arg-type]

    async def _run_and_wait(
        self, operation: str, call: tuple[bytes | str | int | float, ...]
    ) -> Any:
        # One pipeline, so WAIT runs on the connection that made the write (WAIT counts the
        # replicas that acknowledged that connection's writes).
        assert self._durability is not None
        wanted, timeout_ms = self._durability.replicas, self._durability.timeout_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.fcall(*call)  # type: ignore[arg-type]
            pipe.wait(wanted, timeout_ms)
            reply, confirmed = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(confirmed, Exception):
            raise confirmed
        if int(confirmed) < wanted:
            raise ReplicaWaitError(
                f"the {operation} was written on the primary but {confirmed} of "
                f"{wanted} replicas (EMP_REDIS_WAIT_REPLICAS) confirmed it within "
                f"{timeout_ms} ms; a failover may lose it. Check INFO replication on the primary "
                "or lower EMP_REDIS_WAIT_REPLICAS"
            )
        return reply
