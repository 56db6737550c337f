"""Deliveries reach a real receiver on loopback, signed so standardwebhooks verifies them."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from emp_queue import JobQueue, JobSpec
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.models import DeliveryStatus, WebhookEvent
from emp_queue.webhooks.store import WebhookStore
from tests.integration.webhooks.conftest import SIM, Dispatching, complete_jobs, first_attempt


async def test_a_completed_job_calls_its_webhook_signed(
    job_queue: JobQueue, receiver: WebhookReceiver, dispatcher_for: Dispatching
) -> None:
    async with dispatcher_for() as dispatcher:
        [job_id] = await complete_jobs(job_queue, 1, webhook=receiver.url + "/hook")
        [webhook_id] = await receiver.wait_for_accepted(1, timeout_s=30)
        secret = await dispatcher.store.job_secret(None)

    [request] = receiver.received
    assert request.path == "/hook"
    verified = Webhook(secret).verify(request.body, request.headers)
    assert verified["type"] == "job.completed"
    assert verified["data"]["job_id"] == job_id
    assert verified["data"]["status"] == "completed"
    assert verified["data"]["result"] == {"n": job_id}
    delivery = await dispatcher.store.get(webhook_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        DeliveryStatus.DELIVERED,
        1,
        204,
    )
    assert [d.id for d in await dispatcher.store.job_log(job_id)] == [webhook_id]


async def test_a_wrong_secret_does_not_verify(
    job_queue: JobQueue, receiver: WebhookReceiver, dispatcher_for: Dispatching
) -> None:
    async with dispatcher_for():
        await complete_jobs(job_queue, 1, webhook=receiver.url)
        await receiver.wait_for_accepted(1, timeout_s=30)
    [request] = receiver.received
    other = Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        other.verify(request.body, request.headers)


async def test_subscriptions_get_the_events_they_filter_for(
    job_queue: JobQueue,
    redis_client: Redis,
    receiver: WebhookReceiver,
    dispatcher_for: Dispatching,
) -> None:
    store = WebhookStore(redis_client, job_queue.keys, retention_s=60)
    ends = await store.add_subscription(
        customer_id="acme",
        url=receiver.url + "/ends",
        events=frozenset({WebhookEvent.JOB_COMPLETED, WebhookEvent.JOB_FAILED}),
    )
    progress = await store.add_subscription(
        customer_id="acme",
        url=receiver.url + "/progress",
        events=frozenset({WebhookEvent.JOB_PROGRESS}),
    )
    await store.add_subscription(  # another customer's: told nothing about acme's jobs
        customer_id="globex", url=receiver.url + "/globex", events=frozenset(WebhookEvent)
    )
    async with dispatcher_for():
        await job_queue.register_worker("w", SIM)
        job = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
        [claimed] = await job_queue.claim("w")
        for percent in (10, 30, 40, 60, 99):  # milestones 25, 50 and 75 reached once each
            await job_queue.report_progress("w", job.id, claimed.attempt, percent)
        await job_queue.complete("w", job.id, claimed.attempt, {"ok": True})
        await receiver.wait_for_accepted(4, timeout_s=30)

    by_path: dict[str, list[dict[str, object]]] = {}
    for request in receiver.received:
        secret = ends.secret if request.path == "/ends" else progress.secret
        by_path.setdefault(request.path, []).append(
            Webhook(secret).verify(request.body, request.headers)
        )
    assert sorted(by_path) == ["/ends", "/progress"]
    assert [body["type"] for body in by_path["/ends"]] == ["job.completed"]
    progress_seen = sorted(
        json.loads(json.dumps(body["data"]))["progress"] for body in by_path["/progress"]
    )
    assert progress_seen == [30, 60, 99]
    [ends_request] = [r for r in receiver.received if r.path == "/ends"]
    assert [d.id for d in await store.subscription_log(ends.id)] == [ends_request.webhook_id]


async def test_a_private_target_is_refused_without_a_request(
    job_queue: JobQueue, receiver: WebhookReceiver, dispatcher_for: Dispatching
) -> None:
    async with dispatcher_for(allow_hosts=[]) as dispatcher:
        [job_id] = await complete_jobs(job_queue, 1, webhook=receiver.url + "/inside")
        delivery = await first_attempt(dispatcher, job_id)

    assert delivery.status is DeliveryStatus.FAILED
    assert "EMP_WEBHOOKS_ALLOW_HOSTS" in (delivery.last_error or "")
    assert receiver.received == []


async def test_a_redirect_is_not_followed(
    job_queue: JobQueue, receiver: WebhookReceiver, dispatcher_for: Dispatching
) -> None:
    receiver.status_code = 302
    receiver.location = receiver.url + "/elsewhere"
    async with dispatcher_for(retry_base_s=30, retry_max_delay_s=30) as dispatcher:
        [job_id] = await complete_jobs(job_queue, 1, webhook=receiver.url + "/hook")
        delivery = await first_attempt(dispatcher, job_id)

    assert delivery.status is DeliveryStatus.PENDING  # a failure: retried later
    assert "redirect" in (delivery.last_error or "")
    assert [request.path for request in receiver.received] == ["/hook"]


async def test_a_large_result_is_left_out_of_the_payload(
    job_queue: JobQueue, receiver: WebhookReceiver, dispatcher_for: Dispatching
) -> None:
    async with dispatcher_for(max_payload_bytes=1024):
        await job_queue.register_worker("w", SIM)
        job = await job_queue.submit(JobSpec(service_required="sim", webhook=receiver.url))
        [claimed] = await job_queue.claim("w")
        await job_queue.complete("w", job.id, claimed.attempt, {"text": "x" * 5000})
        await receiver.wait_for_accepted(1, timeout_s=30)

    [request] = receiver.received
    body = json.loads(request.body)
    assert len(request.body) <= 1024
    assert body["data"]["result_omitted"] is True
    assert "result" not in body["data"]
