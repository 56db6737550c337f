"""What one customer can reach of another's: nothing (issue 13, findings 2, 3, 4, 8, 14).

``acme`` and ``globex`` are client keys of two customers; every test here is one way a
customer tried to reach the other's data, or to break the service for everyone.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.api.settings import ApiSettings
from emp_queue.storage import StorageSettings, build_asset_storage
from tests.integration.api.conftest import TEST_SERVICES, ApiKeys, bearer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture
def api_settings(storage_settings: StorageSettings) -> ApiSettings:
    return ApiSettings(
        rate_limit_per_s=None, sweep_interval_s=None, key_cache_s=0, services=TEST_SERVICES,
        storage=storage_settings,
    )  # fmt: skip


async def submit(client: httpx.AsyncClient, key: str, **fields: Any) -> httpx.Response:
    return await client.post("/api/jobs", json={"service_required": "sim", **fields},
                             headers=bearer(key))  # fmt: skip


@pytest.mark.parametrize("path_form", ["%2E", "."])
async def test_a_dot_segment_does_not_reach_another_customers_output(
    client: httpx.AsyncClient,
    api_keys: ApiKeys,
    job_queue: JobQueue,
    storage_settings: StorageSettings,
    path_form: str,
) -> None:
    await job_queue.submit(JobSpec(id="job-1", service_required="sim", customer_id="acme"))
    stored = await build_asset_storage(storage_settings).store(
        "job-1", {"storage": {"prefix": "p"}}, PNG, content_type="image/png"
    )
    dot_job = await submit(client, api_keys.globex, id=".")
    head, _, name = stored.url.rpartition("/")
    url = httpx.URL(f"{head}/{path_form}/{name}")
    # Sent as written: no client-side normalisation of the dot segment.
    request = client.build_request("GET", url, headers=bearer(api_keys.globex))
    request.url = request.url.copy_with(raw_path=f"{url.raw_path.decode()}".encode())
    response = await client.send(request)

    assert dot_job.status_code == 422
    assert response.status_code == 404
    assert response.content != PNG


async def test_workflows_are_scoped_by_customer(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    step = {"workflow_id": "wf-1", "total_steps": 2}
    acme_1 = await submit(client, api_keys.acme, current_step=1, **step)
    globex_1 = await submit(client, api_keys.globex, current_step=1, **step)
    globex_2 = await submit(client, api_keys.globex, current_step=2, **step)

    acme_view = await client.get("/api/workflows/wf-1", headers=bearer(api_keys.acme))
    globex_view = await client.get("/api/workflows/wf-1", headers=bearer(api_keys.globex))
    admin_view = await client.get(
        "/api/workflows/wf-1", params={"customer": "acme"}, headers=bearer(api_keys.admin)
    )
    listed = await client.get(
        "/api/jobs", params={"workflow": "wf-1"}, headers=bearer(api_keys.acme)
    )

    assert {acme_1.status_code, globex_1.status_code, globex_2.status_code} == {201}
    assert acme_1.json()["workflow_id"] == "wf-1" == globex_2.json()["workflow_id"]
    assert [job["id"] for job in acme_view.json()["jobs"]] == [acme_1.json()["id"]]
    assert acme_view.json()["status"] == "running"
    assert [job["id"] for job in globex_view.json()["jobs"]] == [
        globex_1.json()["id"], globex_2.json()["id"]
    ]  # fmt: skip
    assert admin_view.json()["jobs"] == acme_view.json()["jobs"]
    assert [job["id"] for job in listed.json()["jobs"]] == [acme_1.json()["id"]]


async def test_another_customers_workflow_is_404(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    await submit(client, api_keys.acme, workflow_id="private", current_step=1, total_steps=1)

    response = await client.get("/api/workflows/private", headers=bearer(api_keys.globex))

    assert response.status_code == 404


async def test_another_customers_job_cannot_fail_my_workflow(
    client: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await submit(client, api_keys.acme, workflow_id="wf", current_step=1, total_steps=2)
    intruder = await submit(client, api_keys.globex, workflow_id="wf", current_step=2)
    await client.post(f"/api/jobs/{intruder.json()['id']}/cancel", headers=bearer(api_keys.globex))

    acme_view = await client.get("/api/workflows/wf", headers=bearer(api_keys.acme))

    assert acme_view.json()["status"] == "running"
    assert len(acme_view.json()["jobs"]) == 1


@pytest.mark.parametrize("bad_id", ["X:jobs", "a:b", ".", "..", ".env", "a/b"])
async def test_ids_that_would_collide_with_key_names_are_refused(
    client: httpx.AsyncClient, api_keys: ApiKeys, bad_id: str
) -> None:
    as_job = await submit(client, api_keys.acme, id=bad_id)
    as_workflow = await submit(client, api_keys.acme, workflow_id=bad_id)

    assert as_job.status_code == 422
    assert as_workflow.status_code == 422


async def test_a_colon_workflow_id_breaks_nothing(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    """The reported sequence: workflow X, then workflow ``X:jobs``, then reading the job."""
    first = await submit(client, api_keys.admin, id="j1", workflow_id="X", current_step=1)
    second = await submit(client, api_keys.admin, id="j2", workflow_id="X:jobs", current_step=1)
    for job_id in ("j1", "j2"):
        read = await client.get(f"/api/jobs/{job_id}", headers=bearer(api_keys.admin))
        assert read.status_code in (200, 404), read.text
    workflow = await client.get("/api/workflows/X", headers=bearer(api_keys.admin))

    assert first.status_code == 201
    assert second.status_code == 422
    assert [job["id"] for job in workflow.json()["jobs"]] == ["j1"]


async def test_a_worker_key_cannot_evict_workers(
    client: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))

    by_worker = await client.delete("/api/workers/w1", headers=bearer(api_keys.worker))
    still_there = [w.worker_id for w in await job_queue.workers()]
    by_admin = await client.delete("/api/workers/w1", headers=bearer(api_keys.admin))

    assert by_worker.status_code == 403
    assert still_there == ["w1"]
    assert by_admin.json() == {"worker_id": "w1", "removed": True}


async def test_explain_position_counts_only_the_clients_own_jobs(
    client: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    for _ in range(5):
        await submit(client, api_keys.globex)
    await submit(client, api_keys.acme)
    mine = await submit(client, api_keys.acme)

    client_view = await client.get(
        f"/api/jobs/{mine.json()['id']}/explain", headers=bearer(api_keys.acme)
    )
    admin_view = await client.get(
        f"/api/jobs/{mine.json()['id']}/explain", headers=bearer(api_keys.admin)
    )

    assert client_view.json()["position"] == 1
    assert admin_view.json()["position"] == 6
