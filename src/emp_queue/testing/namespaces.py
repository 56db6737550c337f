"""Namespaces for tests: unique names, and cleanup that touches nothing else on the server."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from emp_queue.core.queue import JobQueue


def unique_namespace(label: str = "test") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


async def delete_namespace(redis: Redis, namespace: str) -> int:
    """UNLINK every key of the namespace, found with SCAN (never KEYS, never FLUSHDB)."""
    return await JobQueue(redis, namespace=namespace).purge()
