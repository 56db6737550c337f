"""A failing endpoint's breaker opens and recovers; a dead dispatcher's events are taken
over. (A receiver down for 30 s is tests/e2e/webhooks/test_receiver_down.py.)"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from emp_queue import JobQueue
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.breaker import endpoint_digest, endpoint_of
from emp_queue.webhooks.intake import EventIntake
from emp_queue.webhooks.store import WebhookStore
from tests.integration.webhooks.conftest import Dispatching, complete_jobs


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_the_breaker_opens_holds_deliveries_back_and_recovers(
    job_queue: JobQueue,
    redis_client: Redis,
    receiver: WebhookReceiver,
    dispatcher_for: Dispatching,
) -> None:
    receiver.status_code = 503
    breaker_key = job_queue.keys.webhook_breaker(endpoint_digest(endpoint_of(receiver.url)))
    settings = {"breaker_failures": 3, "breaker_open_s": 2.0, "batch": 1, "concurrency": 1}
    async with dispatcher_for(retry_base_s=0.05, retry_max_delay_s=0.1, **settings):
        job_ids = await complete_jobs(job_queue, 10, webhook=receiver.url + "/hook")
        async with asyncio.timeout(10):
            while not await redis_client.hget(breaker_key, "open_until"):  # noqa: ASYNC110 - polled
                await asyncio.sleep(0.02)
        failed_before = len(receiver.received)
        await asyncio.sleep(1.0)
        assert len(receiver.received) == failed_before, "requests were sent while open"
        assert failed_before == 3

        receiver.status_code = 204
        await receiver.wait_for_accepted(len(job_ids), timeout_s=15)
        assert not await redis_client.exists(breaker_key)
    answered_503 = [r for r in receiver.received if r.answered == 503]
    probe = receiver.received[len(answered_503)]
    assert probe.at - answered_503[-1].at >= 1.5, "the probe came before the breaker's time"


async def test_events_a_dead_dispatcher_read_are_taken_over(
    job_queue: JobQueue, redis_client: Redis, receiver: WebhookReceiver
) -> None:
    store = WebhookStore(redis_client, job_queue.keys, retention_s=60)

    def intake(consumer: str) -> EventIntake:
        return EventIntake(redis_client, job_queue, store, consumer=consumer, batch=100,
                           max_payload_bytes=65536, reclaim_idle_ms=200)  # fmt: skip

    dead, alive = intake("dead"), intake("alive")
    await dead.ensure_group()
    [job_id] = await complete_jobs(job_queue, 1, webhook=receiver.url)
    read_by_the_dead = await dead.read(block_ms=100)  # read, then it dies before recording
    assert any(event.job_id == job_id for event in read_by_the_dead)
    assert await store.job_log(job_id) == []

    await asyncio.sleep(0.3)
    taken_over = await alive.read(block_ms=100)
    await alive.take(taken_over, [])

    assert {event.id for event in taken_over} == {event.id for event in read_by_the_dead}
    [delivery] = await store.job_log(job_id)
    assert delivery.url == receiver.url
