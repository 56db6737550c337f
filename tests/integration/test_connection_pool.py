"""The client from ``connect``: when all its connections are busy, a command waits for one."""

from __future__ import annotations

import asyncio

from emp_queue.core.broker import connect


async def test_commands_beyond_the_pool_wait_for_a_connection_instead_of_failing(
    redis_url: str, namespace: str
) -> None:
    separator = "&" if "?" in redis_url else "?"
    redis = connect(f"{redis_url}{separator}max_connections=2")
    try:
        # Ten blocking reads of 0.1 s at once over two connections: they take turns.
        replies = await asyncio.gather(
            *(redis.blpop([f"{{{namespace}}}:pool-test"], timeout=0.1) for _ in range(10))
        )
    finally:
        await redis.aclose()
    assert replies == [None] * 10
