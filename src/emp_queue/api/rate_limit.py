"""Per-key request budgets that every API replica shares through Redis.

A key may make ``burst`` requests per fixed window (``burst / rate_limit_per_s`` seconds);
the window's counter lives in Redis so replicas add up. To keep the hot path at one Redis
call per request *or less*, a replica leases requests in chunks (one ``INCRBY`` buys up to
``MAX_LEASE`` requests) and spends them locally. The chunk is at most 1/16 of the burst, so
leased-but-unused requests held by other replicas make a key hit its limit at worst a little
early, never late: the total granted in a window never exceeds ``burst``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from emp_queue.core.keys import Keys

MAX_LEASE = 32
MAX_TRACKED_KEYS = 10_000

# INCRBY the window's counter by the lease; the first lease of a window sets its expiry.
_LEASE_LUA = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return count
"""


@dataclass
class _Allowance:
    window: int
    remaining: int = 0
    exhausted: bool = False
    """The shared counter reached the burst: nothing more this window, no need to ask."""
    leasing: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One lease at a time per key: a flood of requests waits for it instead of piling
    INCRBYs (and connections) onto Redis."""


class RateLimiter:
    """Charges one request to a key; says how long to wait when its budget is spent."""

    def __init__(self, redis: Redis, keys: Keys, burst: int, window_ms: int) -> None:
        self._keys = keys
        self._burst = burst
        self._window_ms = window_ms
        self._lease = max(1, min(MAX_LEASE, burst // 16))
        self._script = redis.register_script(_LEASE_LUA)
        self._allowances: dict[str, _Allowance] = {}

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def window_ms(self) -> int:
        return self._window_ms

    async def charge(self, key_hash: str) -> float | None:
        """Spend one request of the key's budget: ``None`` when allowed, else the seconds
        until its window ends (the ``Retry-After``)."""
        now_ms = int(time.time() * 1000)
        window = now_ms // self._window_ms
        allowance = self._allowances.get(key_hash)
        if allowance is None or allowance.window != window:
            if len(self._allowances) >= MAX_TRACKED_KEYS:
                self._allowances.clear()
            allowance = self._allowances[key_hash] = _Allowance(window)
        if allowance.remaining == 0 and not allowance.exhausted:
            async with allowance.leasing:
                if allowance.remaining == 0 and not allowance.exhausted:
                    allowance.remaining = await self._lease_more(key_hash, window)
                    allowance.exhausted = allowance.remaining == 0
        if allowance.remaining == 0:
            return max(1, math.ceil(((window + 1) * self._window_ms - now_ms) / 1000))
        allowance.remaining -= 1
        return None

    async def _lease_more(self, key_hash: str, window: int) -> int:
        counter = self._keys.api_rate(key_hash, window)
        count = int(await self._script(keys=[counter], args=[self._lease, self._window_ms]))
        already = count - self._lease
        return max(0, min(self._lease, self._burst - already))
