"""A dispatcher over the test namespace, a receiver on loopback, and jobs that finish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.dispatcher import WebhookDispatcher
from emp_queue.webhooks.models import Delivery
from emp_queue.webhooks.settings import WebhookSettings

SIM = WorkerCapabilities(services=["sim"])

FAST = {
    "allow_hosts": ["127.0.0.1/32"],
    "timeout_s": 2.0,
    "retry_base_s": 0.2,
    "retry_max_delay_s": 1.0,
    "breaker_open_s": 0.5,
    "idle_poll_s": 0.05,
}
"""Loopback receivers allowed, retries and breaker probes in fractions of a second."""


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    fake = WebhookReceiver()
    async with fake.running():
        yield fake


@contextlib.asynccontextmanager
async def dispatching(
    redis: Redis, queue: JobQueue, **overrides: Any
) -> AsyncIterator[WebhookDispatcher]:
    """A dispatcher running in this event loop; it joins the event group before yielding."""
    dispatcher = WebhookDispatcher(redis, queue, WebhookSettings(**{**FAST, **overrides}))
    await dispatcher.prepare()
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.close()
        async with asyncio.timeout(30):
            await task


Dispatching = Callable[..., contextlib.AbstractAsyncContextManager[WebhookDispatcher]]


@pytest.fixture
def dispatcher_for(redis_client: Redis, job_queue: JobQueue) -> Dispatching:
    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[WebhookDispatcher]:
        return dispatching(redis_client, job_queue, **overrides)

    return start


async def complete_jobs(
    queue: JobQueue, count: int, *, webhook: str | None, customer_id: str | None = None
) -> list[str]:
    """Submit ``count`` jobs and complete each through a registered worker."""
    await queue.register_worker("hook-worker", SIM)
    jobs = await queue.submit_many(
        [
            JobSpec(service_required="sim", webhook=webhook, customer_id=customer_id)
            for _ in range(count)
        ]
    )
    done = 0
    while done < count:
        claimed = await queue.claim("hook-worker", count=50)
        for item in claimed:
            await queue.complete("hook-worker", item.job.id, item.attempt, {"n": item.job.id})
        done += len(claimed)
    return [job.id for job in jobs]


async def first_attempt(dispatcher: WebhookDispatcher, job_id: str) -> Delivery:
    """The job's delivery once it has been tried (or given up) at least once."""
    async with asyncio.timeout(30):
        while True:
            log = await dispatcher.store.job_log(job_id)
            if log and log[0].attempts:
                return log[0]
            await asyncio.sleep(0.05)  # Redis tells no one when a record changes
