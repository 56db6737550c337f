"""What the queue remembers of a customer besides their jobs: their policy, their recent-claims
figure for fair share, the work their running cap held back, and their rows in the hourly
usage hashes. Erasing a customer (the
API's ``POST /api/customers/{id}/erase``) removes these after the jobs."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from emp_queue.core.customers import delete_policy
from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.core.usage import DAY_MS, HOUR_MS, USAGE_RETENTION_S


async def erase_customer_records(redis: Redis, keys: Keys, customer_id: str) -> tuple[bool, int]:
    """Delete the customer's policy, fair-share figure and usage rows; whether a policy was
    there, and how many usage fields went."""
    policy_deleted = await delete_policy(redis, keys, customer_id)
    await redis.hdel(keys.customer_usage, customer_id, f"t|{customer_id}")
    await redis.unlink(keys.customer_capped(customer_id))
    now_ms = int(time.time() * 1000)
    first_hour = (now_ms - USAGE_RETENTION_S * 1000 - DAY_MS) // HOUR_MS * HOUR_MS
    hours = range(first_hour, now_ms + HOUR_MS, HOUR_MS)
    async with redis.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hkeys(keys.usage_hour(hour))
        replies: list[Any] = await pipe.execute()
    prefix = f"{customer_id}|"
    removed = 0
    async with redis.pipeline(transaction=False) as pipe:
        for hour, fields in zip(hours, replies, strict=True):
            mine = [as_text(f) for f in fields if as_text(f).startswith(prefix)]
            if mine:
                pipe.hdel(keys.usage_hour(hour), *mine)
                removed += len(mine)
        await pipe.execute()
    return policy_deleted, removed
