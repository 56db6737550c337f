"""The webhook routes: subscriptions per customer, the SSRF guard, the delivery log and
manual redelivery."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from emp_queue.core.keys import Keys
from emp_queue.webhooks.models import Attempt, DeliveryStatus, NewDelivery, WebhookEvent
from emp_queue.webhooks.store import Outcome, WebhookStore, now_ms
from tests.integration.api.conftest import ApiKeys, bearer


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "ftp://example.com/hook",
        "not a url",
    ],
)
async def test_private_and_odd_targets_are_refused(
    client: httpx.AsyncClient, api_keys: ApiKeys, url: str
) -> None:
    response = await client.post("/api/webhooks", json={"url": url}, headers=bearer(api_keys.acme))
    assert response.status_code == 422, response.text
    assert url in response.json()["message"]


async def test_a_customer_manages_its_own_subscriptions_only(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    acme, globex, admin = bearer(api_keys.acme), bearer(api_keys.globex), bearer(api_keys.admin)
    created = await client.post(
        "/api/webhooks",
        json={"url": "http://93.184.215.14/hook", "events": ["job.completed", "job.progress"]},
        headers=acme,
    )
    assert created.status_code == 201, created.text
    subscription = created.json()
    assert subscription["secret"].startswith("whsec_")
    assert subscription["customer_id"] == "acme"
    path = f"/api/webhooks/{subscription['id']}"

    assert (await client.get(path, headers=globex)).status_code == 404
    assert (await client.delete(path, headers=globex)).status_code == 404
    assert (await client.get("/api/webhooks", headers=globex)).json()["subscriptions"] == []
    [listed] = (await client.get("/api/webhooks", headers=admin)).json()["subscriptions"]
    assert listed["id"] == subscription["id"]
    assert listed["secret"] is None
    assert sorted(listed["events"]) == ["job.completed", "job.progress"]

    assert (await client.delete(path, headers=acme)).json()["id"] == subscription["id"]
    assert (await client.get(path, headers=acme)).status_code == 404


async def test_a_client_cannot_subscribe_for_another_customer(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    response = await client.post(
        "/api/webhooks",
        json={"url": "http://93.184.215.14/hook", "customer_id": "globex"},
        headers=bearer(api_keys.acme),
    )
    assert response.status_code == 403


async def test_each_customer_has_one_job_webhook_secret(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    acme = [
        (await client.get("/api/webhooks/job-secret", headers=bearer(api_keys.acme))).json()
        for _ in range(2)
    ]
    globex = await client.get("/api/webhooks/job-secret", headers=bearer(api_keys.globex))
    assert acme[0] == acme[1]
    assert acme[0]["secret"].startswith("whsec_")
    assert globex.json()["secret"] != acme[0]["secret"]


async def test_a_delivery_is_logged_per_job_and_can_be_redelivered(
    client: httpx.AsyncClient, api_keys: ApiKeys, redis_client: Redis, namespace: str
) -> None:
    acme, globex = bearer(api_keys.acme), bearer(api_keys.globex)
    job = await client.post("/api/jobs", json={"service_required": "sim"}, headers=acme)
    job_id = job.json()["id"]
    store = WebhookStore(redis_client, Keys(namespace), retention_s=60)
    delivery = NewDelivery(
        id="msg_" + "0" * 32,
        event=WebhookEvent.JOB_COMPLETED,
        url="http://93.184.215.14/hook",
        body=b'{"type":"job.completed"}',
        created_at=now_ms(),
        job_id=job_id,
        customer_id="acme",
        subscription_id=None,
    )
    assert await store.enqueue([delivery]) == 1
    assert await store.enqueue([delivery]) == 0  # recorded once per id
    [claimed] = await store.claim(now_ms(), 60_000, 10)
    attempt = Attempt(now_ms(), 500, "HTTP 500", 12.5)
    await store.record([Outcome(claimed, attempt, DeliveryStatus.FAILED, None)])

    log = (await client.get(f"/api/jobs/{job_id}/webhooks", headers=acme)).json()
    [entry] = log["deliveries"]
    assert (entry["id"], entry["status"], entry["attempts"]) == (delivery.id, "failed", 1)
    assert entry["last_status_code"] == 500
    assert (await client.get(f"/api/jobs/{job_id}/webhooks", headers=globex)).status_code == 404

    detail = (await client.get(f"/api/webhook-deliveries/{delivery.id}", headers=acme)).json()
    assert detail["payload"] == {"type": "job.completed"}
    assert detail["attempt_log"] == [
        {"at": attempt.at, "status_code": 500, "error": "HTTP 500", "latency_ms": 12.5}
    ]
    other = await client.post(f"/api/webhook-deliveries/{delivery.id}/redeliver", headers=globex)
    assert other.status_code == 404
    again = await client.post(f"/api/webhook-deliveries/{delivery.id}/redeliver", headers=acme)
    assert again.json()["status"] == "pending"
    [due] = await store.claim(now_ms(), 60_000, 10)
    assert due.id == delivery.id
