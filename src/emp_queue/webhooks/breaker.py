"""Per-endpoint circuit breakers, shared by every dispatcher through Redis.

An endpoint (scheme, host and port) that failed ``threshold`` times in a row is *open*:
its deliveries are held back, without counting an attempt, until ``open_s`` has passed.
Then it is *half-open*: one dispatcher wins the probe lock and sends one delivery; success
closes the breaker, failure opens it for another ``open_s``. A healthy endpoint costs one
read per batch and no writes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from emp_queue.core.keys import Keys

BREAKER_TTL_MS = 24 * 3600 * 1000
HALF_OPEN_RECHECK_MS = 1000


def endpoint_of(url: str) -> str:
    """The breaker's unit: scheme, host and port (paths of one server fail together)."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.scheme}://{parsed.host}:{port}"


def endpoint_digest(endpoint: str) -> str:
    """The endpoint as one key segment (its ``:`` and ``/`` would give a key two meanings)."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BreakerState:
    failures: int
    open_until: int | None

    @property
    def clean(self) -> bool:
        return self.failures == 0 and self.open_until is None


class CircuitBreakers:
    def __init__(
        self, redis: Redis, keys: Keys, *, threshold: int, open_s: float, probe_ms: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.threshold = threshold
        self._open_ms = round(open_s * 1000)
        self._probe_ms = probe_ms

    async def states(self, endpoints: Iterable[str]) -> dict[str, BreakerState]:
        names = sorted(set(endpoints))
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint in names:
                pipe.hmget(
                    self._keys.webhook_breaker(endpoint_digest(endpoint)), "failures", "open_until"
                )
            replies = await pipe.execute()
        return {
            endpoint: BreakerState(int(failures or 0), int(open_until) if open_until else None)
            for endpoint, (failures, open_until) in zip(names, replies, strict=True)
        }

    async def take_probe(self, endpoint: str) -> bool:
        """Whether this dispatcher sends the half-open endpoint's one probe."""
        taken = await self._redis.set(
            self._keys.webhook_probe(endpoint_digest(endpoint)), "1", nx=True, px=self._probe_ms
        )
        return bool(taken)

    def hold_until(self, state: BreakerState, now: int) -> int:
        """When a delivery held back by this breaker should be looked at again."""
        base = state.open_until if state.open_until and state.open_until > now else now
        return base + HALF_OPEN_RECHECK_MS + random.randrange(HALF_OPEN_RECHECK_MS)

    async def succeeded(self, endpoint: str, state: BreakerState) -> None:
        if not state.clean:
            await self._redis.delete(
                self._keys.webhook_breaker(endpoint_digest(endpoint)),
                self._keys.webhook_probe(endpoint_digest(endpoint)),
            )

    async def failed(self, endpoint: str, now: int) -> bool:
        """Count a failure; whether the breaker is open now."""
        key = self._keys.webhook_breaker(endpoint_digest(endpoint))
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "failures", 1)
            pipe.pexpire(key, BREAKER_TTL_MS)
            failures, _ = await pipe.execute()
        if int(failures) < self.threshold:
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, "open_until", now + self._open_ms)
            pipe.delete(self._keys.webhook_probe(endpoint_digest(endpoint)))
            await pipe.execute()
        return True
