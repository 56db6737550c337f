"""Cancelling a workflow's or a customer's jobs in one request."""

from __future__ import annotations

import httpx

from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, JobStatus, WorkerCapabilities
from tests.integration.api.conftest import ApiKeys, bearer

SIM = WorkerCapabilities(services=["sim"])


async def test_a_workflows_unfinished_jobs_are_cancelled_and_nothing_else(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    done = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme",
                                          workflow_id="wf-1"))  # fmt: skip
    [claimed] = await job_queue.claim("w1")
    await job_queue.complete("w1", done.id, claimed.attempt, {"ok": True})
    steps = [
        await job_queue.submit(
            JobSpec(service_required="sim", customer_id="acme", workflow_id="wf-1")
        )
        for _ in range(3)
    ]
    [running] = await job_queue.claim("w1")
    other = await job_queue.submit(
        JobSpec(service_required="sim", customer_id="acme", workflow_id="wf-2")
    )

    answer = await admin.post(
        "/api/jobs/cancel",
        json={"workflow_id": "wf-1", "customer_id": "acme", "reason": "customer gave up"},
    )
    audit = (await admin.get("/api/audit", params={"action": "jobs.cancel_many"})).json()

    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["cancelled"]) == sorted(step.id for step in steps)
    assert answer.json()["more"] is False
    assert running.job.id in answer.json()["cancelled"]
    for step in steps:
        job = await job_queue.get(step.id)
        assert (job.status, job.message) == (JobStatus.CANCELLED, "customer gave up")
    assert (await job_queue.get(done.id)).status == JobStatus.COMPLETED
    assert (await job_queue.get(other.id)).status != JobStatus.CANCELLED
    [entry] = audit["entries"]
    assert (entry["target"], entry["detail"]["cancelled"]) == ("wf-1", 3)


async def test_a_client_cancels_only_its_own_customers_jobs(
    client: httpx.AsyncClient, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    mine = [await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
            for _ in range(2)]  # fmt: skip
    theirs = await job_queue.submit(JobSpec(service_required="sim", customer_id="globex"))

    answer = await client.post("/api/jobs/cancel", json={}, headers=bearer(api_keys.acme))
    everything = await client.post(
        "/api/jobs/cancel", json={"customer_id": "acme"}, headers=bearer(api_keys.acme)
    )
    foreign = await client.post(
        "/api/jobs/cancel", json={"customer_id": "globex"}, headers=bearer(api_keys.acme)
    )
    as_worker = await client.post(
        "/api/jobs/cancel", json={"customer_id": "acme"}, headers=bearer(api_keys.worker)
    )

    assert answer.status_code == 422
    assert "name a workflow_id or a customer_id" in answer.text
    assert everything.status_code == 200
    assert sorted(everything.json()["cancelled"]) == sorted(job.id for job in mine)
    assert foreign.status_code == 403
    assert as_worker.status_code == 403
    assert (await job_queue.get(theirs.id)).status != JobStatus.CANCELLED
