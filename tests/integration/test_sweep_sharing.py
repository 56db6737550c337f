"""A fleet shares the sweep: a worker skips its sweep while another's is recent."""

from __future__ import annotations

import asyncio

from emp_queue import JobQueue


async def test_a_recent_sweep_by_another_process_is_not_repeated(job_queue: JobQueue) -> None:
    other = JobQueue(job_queue.redis, namespace=job_queue.keys.namespace)

    assert await job_queue.sweep_unless_recent(0.3) is not None
    assert await other.sweep_unless_recent(0.3) is None  # swept a moment ago

    async with asyncio.timeout(5):
        while await other.sweep_unless_recent(0.3) is None:  # noqa: ASYNC110 (no event for it)
            await asyncio.sleep(0.05)
