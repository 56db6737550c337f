"""Deleting a finished job with its outputs, and erasing everything of a customer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.customers import CustomerPolicy
from emp_queue.core.keys import Keys
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.models import JobSpec, JobStatus, WorkerCapabilities
from emp_queue.storage import AssetStorage, LocalDirectoryBackend, StorageSettings
from tests.integration.api.conftest import TEST_SERVICES, ApiKeys, bearer

SIM = WorkerCapabilities(services=["sim"])


IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    return tmp_path / "assets"


@pytest.fixture
async def http(
    core_settings: CoreSettings, redis_client: Redis, assets: Path, api_keys: ApiKeys
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ApiSettings(
        rate_limit_per_s=None,
        sweep_interval_s=None,
        key_cache_s=0,
        services=TEST_SERVICES,
        storage=StorageSettings(local_dir=assets),
    )
    app = create_app(settings, core_settings, redis_client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.test", headers=bearer(api_keys.admin)
    ) as client:
        yield client


async def finished_with_output(queue: JobQueue, assets: Path, customer: str) -> tuple[str, Path]:
    """A completed job whose result names one stored image; the image's file."""
    job = await queue.submit(JobSpec(service_required="sim", customer_id=customer))
    [claimed] = await queue.claim("w1")
    storage = AssetStorage(
        {"local": LocalDirectoryBackend(assets, "http://api.test/assets")}, "local", "assets"
    )
    stored = await storage.store(job.id, {}, b"\x89PNG fake", content_type="image/png")
    await queue.complete("w1", job.id, claimed.attempt, {"images": [stored.as_result()]})
    return job.id, assets / stored.bucket / stored.key


async def test_a_finished_job_is_deleted_with_its_outputs_and_counts(
    http: httpx.AsyncClient, job_queue: JobQueue, assets: Path, api_keys: ApiKeys
) -> None:
    await job_queue.register_worker("w1", SIM)
    job_id, image = await finished_with_output(job_queue, assets, "acme")
    waiting = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    counted = (await http.get("/api/queues")).json()["queues"][0]["counts"]

    as_globex = await http.delete(f"/api/jobs/{job_id}", headers=bearer(api_keys.globex))
    deleted = await http.delete(f"/api/jobs/{job_id}")
    again = await http.delete(f"/api/jobs/{job_id}")
    still_waiting = await http.delete(f"/api/jobs/{waiting.id}")
    after = (await http.get("/api/queues")).json()["queues"][0]["counts"]
    listed = (await http.get("/api/jobs")).json()["jobs"]
    audit = (await http.get("/api/audit", params={"action": "job.delete"})).json()["entries"]

    assert image.exists() is False
    assert as_globex.status_code == 404
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "completed"
    assert deleted.json()["assets_deleted"] == [
        f"local:assets/{image.relative_to(assets / 'assets')}"
    ]
    assert (await http.get(f"/api/jobs/{job_id}")).status_code == 404
    assert again.status_code == 404
    assert still_waiting.status_code == 409
    assert "cancel it first" in still_waiting.json()["message"]
    assert after.get("completed", 0) == counted["completed"] - 1
    assert [job["id"] for job in listed] == [waiting.id]
    assert [(e["target"], e["status"]) for e in audit][:2] == [(waiting.id, 409), (job_id, 404)]


async def test_erasing_a_customer_removes_their_jobs_outputs_and_keys(
    http: httpx.AsyncClient,
    job_queue: JobQueue,
    assets: Path,
    redis_client: Redis,
    namespace: str,
) -> None:
    await job_queue.register_worker("w1", SIM)
    store = ApiKeyStore(redis_client, Keys(namespace))
    initech = await store.create(Role.CLIENT, customer_id="initech")
    _, image = await finished_with_output(job_queue, assets, "initech")
    await finished_with_output(job_queue, assets, "acme")  # acme's usage must stay
    await job_queue.submit(JobSpec(service_required="sim", customer_id="initech"))
    await job_queue.claim("w1")  # running
    await job_queue.submit(JobSpec(service_required="sim", customer_id="initech"))  # waiting
    # At its cap, so a claim passes its waiting job over and notes the work held back.
    await job_queue.set_customer_policy("initech", CustomerPolicy(max_running=1))
    assert await job_queue.claim("w1") == []
    capped = Keys(namespace).customer_capped("initech")
    assert await redis_client.exists(capped) == 1
    other = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))

    png = {"Content-Type": "image/png"}
    uploads = [
        (await http.post(f"/api/uploads?customer={name}", content=IMAGE, headers=png)).json()
        for name in ("initech", "acme")
    ]
    assert (await http.put("/api/customers/initech", json={"weight": 2})).status_code == 200
    used_before = (await http.get("/api/usage", params={"customer": "initech"})).json()

    erased = await http.post("/api/customers/initech/erase")
    used_after = (await http.get("/api/usage", params={"customer": "initech"})).json()
    acme_used = (await http.get("/api/usage", params={"customer": "acme"})).json()
    with_policies = (await http.get("/api/customers")).json()
    refused = await http.get("/api/jobs", headers=bearer(initech.secret))
    left = (await http.get("/api/jobs", params={"customer": "initech"})).json()["jobs"]

    assert erased.status_code == 200, erased.text
    assert erased.json() == {
        "customer_id": "initech",
        "jobs_cancelled": 2,
        "jobs_deleted": 3,
        "assets_deleted": 1,
        "assets_missing": 0,
        "uploads_deleted": 1,
        "keys_revoked": [initech.key.key_id],
        "policy_deleted": True,
        "usage_fields_deleted": erased.json()["usage_fields_deleted"],
    }
    assert erased.json()["usage_fields_deleted"] > 0
    assert used_before["rows"]
    assert not used_after["rows"]
    assert acme_used["rows"]
    assert [view["customer_id"] for view in with_policies] == []
    assert not image.exists()
    assert [(assets / "assets" / upload["key"]).exists() for upload in uploads] == [False, True]
    assert refused.status_code == 401
    assert left == []
    assert await redis_client.exists(capped) == 0
    assert (await job_queue.get(other.id)).status is not JobStatus.CANCELLED
