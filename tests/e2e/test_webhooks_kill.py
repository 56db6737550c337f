"""`emp api` killed with SIGKILL while its deliveries are being retried: after a restart,
every delivery arrives, with the webhook-id it had before."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from redis.asyncio import Redis
from standardwebhooks import Webhook
from tests.e2e.api_process import running_api, wait_ready
from tests.integration.webhooks.conftest import SIM

from emp_queue import JobQueue
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

JOBS = 10
STARTUP_S = 60  # two API starts on a machine that may be loaded
WEBHOOK_ENV = {
    "EMP_WEBHOOKS_ALLOW_HOSTS": '["127.0.0.1/32"]',
    "EMP_WEBHOOKS_TIMEOUT_S": "1",
    "EMP_WEBHOOKS_RETRY_BASE_S": "0.3",
    "EMP_WEBHOOKS_RETRY_MAX_DELAY_S": "0.6",
    "EMP_WEBHOOKS_BREAKER_FAILURES": "1000",
    "EMP_WEBHOOKS_IDLE_POLL_S": "0.1",
}


async def retried_twice(receiver: WebhookReceiver, count: int) -> set[str]:
    """Wait until ``count`` webhook-ids were each refused at least twice."""
    async with asyncio.timeout(30):
        while True:
            seen: dict[str, int] = {}
            for request in receiver.received:
                seen[request.webhook_id] = seen.get(request.webhook_id, 0) + 1
            if len(seen) == count and min(seen.values()) >= 2:
                return set(seen)
            await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
async def test_sigkill_mid_retry_loses_nothing(
    redis_url: str, redis_client: Redis, namespace: str
) -> None:
    receiver = WebhookReceiver(status_code=500)
    queue = JobQueue(redis_client, namespace=namespace)
    async with receiver.running() as receiver_url:
        with running_api(redis_url, namespace, WEBHOOK_ENV) as (process, url):
            assert process.stdout is not None
            process.stdout.readline()
            secret = process.stdout.readline().strip()
            await asyncio.to_thread(wait_ready, url, process, STARTUP_S)
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {secret}"}
            ) as api:
                for _ in range(JOBS):
                    submitted = await api.post(
                        "/api/jobs", json={"service_required": "sim", "webhook": receiver_url}
                    )
                    assert submitted.status_code == 201, submitted.text
                job_secret = (await api.get("/api/webhooks/job-secret")).json()["secret"]
            await queue.register_worker("w", SIM)
            for claimed in await queue.claim("w", count=JOBS):
                await queue.complete("w", claimed.job.id, claimed.attempt, {"ok": True})

            refused_ids = await retried_twice(receiver, JOBS)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

        receiver.status_code = 204
        await asyncio.sleep(1.0)
        assert receiver.accepted_ids() == set(), "something answered while the API was dead"
        with running_api(redis_url, namespace, WEBHOOK_ENV) as (process, url):
            await asyncio.to_thread(wait_ready, url, process, STARTUP_S)
            # Deliveries the dead process held come back when its lease ends (2·1 s + 5 s).
            accepted = await receiver.wait_for_accepted(JOBS, timeout_s=40)

    assert accepted == refused_ids
    job_ids = set()
    for request in receiver.received:
        if request.answered == 204:
            body = Webhook(job_secret).verify(request.body, request.headers)
            job_ids.add(body["data"]["job_id"])
            assert json.loads(request.body)["type"] == "job.completed"
    assert len(job_ids) == JOBS
