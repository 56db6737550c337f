"""Request budgets shared by replicas: leased in chunks, never exceeded in total."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from emp_queue.api.rate_limit import RateLimiter
from emp_queue.core.keys import Keys


async def test_replicas_together_never_grant_more_than_the_burst(
    redis_client: Redis, namespace: str
) -> None:
    replicas = [
        RateLimiter(redis_client, Keys(namespace), burst=64, window_ms=60_000) for _ in "ab"
    ]

    verdicts = await asyncio.gather(*(replicas[n % 2].charge("key-hash") for n in range(200)))

    granted = sum(verdict is None for verdict in verdicts)
    # Leases are 64 // 16 = 4 requests: a replica may hold back at most 3 unused ones.
    assert 64 - 2 * 3 <= granted <= 64
    refused = [verdict for verdict in verdicts if verdict is not None]
    assert refused
    assert all(1 <= wait <= 60 for wait in refused)


async def test_leasing_spares_redis_calls(redis_client: Redis, namespace: str) -> None:
    limiter = RateLimiter(redis_client, Keys(namespace), burst=10_000, window_ms=60_000)
    before = (await redis_client.info("commandstats")).get("cmdstat_incrby", {}).get("calls", 0)

    for _ in range(320):
        assert await limiter.charge("busy-key") is None

    after = (await redis_client.info("commandstats")).get("cmdstat_incrby", {}).get("calls", 0)
    assert after - before <= 320 // 32 + 1, "one INCRBY buys 32 requests"


async def test_keys_have_separate_budgets(redis_client: Redis, namespace: str) -> None:
    limiter = RateLimiter(redis_client, Keys(namespace), burst=1, window_ms=60_000)
    assert await limiter.charge("first") is None
    assert await limiter.charge("first") is not None
    assert await limiter.charge("second") is None
