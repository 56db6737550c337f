"""Jobs through the REST API: submit, read, list, cancel, retry, explain, workflows."""

from __future__ import annotations

import httpx

from emp_queue import FailureClass, JobError, JobQueue, WorkerCapabilities

SIM = WorkerCapabilities(services=["sim"])
GPU = WorkerCapabilities.model_validate(
    {"services": ["comfyui"], "models": {"comfyui": {"installed": ["sd15"]}}}
)


async def test_submitted_job_is_created_and_readable(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)

    created = await admin.post(
        "/api/jobs", json={"service_required": "sim", "priority": 80, "payload": {"n": 1}}
    )
    fetched = await admin.get(f"/api/jobs/{created.json()['id']}")

    assert created.status_code == 201
    assert created.json()["status"] == "pending"
    assert (created.json()["priority"], created.json()["payload"]) == (80, {"n": 1})
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert (await job_queue.get(created.json()["id"])).priority == 80


async def test_submitting_an_existing_id_returns_that_job(admin: httpx.AsyncClient) -> None:
    first = await admin.post("/api/jobs", json={"id": "job-1", "service_required": "sim"})
    again = await admin.post(
        "/api/jobs", json={"id": "job-1", "service_required": "sim", "priority": 99}
    )

    assert again.json()["priority"] == first.json()["priority"] == 50


async def test_batch_submits_every_job_in_order(admin: httpx.AsyncClient) -> None:
    body = {"jobs": [{"service_required": "sim", "payload": {"i": i}} for i in range(25)]}

    response = await admin.post("/api/jobs/batch", json=body)

    assert response.status_code == 201
    assert [job["payload"]["i"] for job in response.json()["jobs"]] == list(range(25))


async def test_listing_pages_through_every_job_once(admin: httpx.AsyncClient) -> None:
    body = {"jobs": [{"service_required": "sim"} for _ in range(7)]}
    submitted = {
        job["id"] for job in (await admin.post("/api/jobs/batch", json=body)).json()["jobs"]
    }
    await admin.post("/api/jobs", json={"service_required": "other"})

    seen: list[str] = []
    params: dict[str, str | int] = {"service": "sim", "limit": 3}
    pages = 0
    while True:
        page = (await admin.get("/api/jobs", params=params)).json()
        pages += 1
        assert len(page["jobs"]) <= 3
        seen += [job["id"] for job in page["jobs"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert sorted(seen) == sorted(submitted)
    assert pages >= 3


async def test_listing_filters_by_status_and_workflow(admin: httpx.AsyncClient) -> None:
    kept = (await admin.post("/api/jobs", json={"service_required": "sim"})).json()
    cancelled = (await admin.post("/api/jobs", json={"service_required": "sim"})).json()
    await admin.post(f"/api/jobs/{cancelled['id']}/cancel")
    step = {"service_required": "sim", "workflow_id": "wf-1", "current_step": 1}
    in_workflow = (await admin.post("/api/jobs", json=step)).json()

    by_status = (await admin.get("/api/jobs", params={"status": "cancelled"})).json()
    by_workflow = (await admin.get("/api/jobs", params={"workflow": "wf-1"})).json()

    assert [job["id"] for job in by_status["jobs"]] == [cancelled["id"]]
    assert [job["id"] for job in by_workflow["jobs"]] == [in_workflow["id"]]
    assert kept["id"] not in {job["id"] for job in by_status["jobs"]}


async def test_cancel_then_retry(admin: httpx.AsyncClient) -> None:
    job = (await admin.post("/api/jobs", json={"service_required": "sim"})).json()

    cancelled = await admin.post(f"/api/jobs/{job['id']}/cancel", json={"reason": "changed mind"})
    cancelled_again = await admin.post(f"/api/jobs/{job['id']}/cancel")
    retried = await admin.post(f"/api/jobs/{job['id']}/retry")
    retried_again = await admin.post(f"/api/jobs/{job['id']}/retry")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled_again.status_code == 409
    assert cancelled_again.json()["error"] == "invalid_transition"
    assert retried.status_code == 200
    assert retried.json()["status"] in ("pending", "unworkable")
    assert retried_again.status_code == 409


async def test_unknown_job_is_404(admin: httpx.AsyncClient) -> None:
    for response in (
        await admin.get("/api/jobs/nope"),
        await admin.post("/api/jobs/nope/cancel"),
        await admin.post("/api/jobs/nope/retry"),
        await admin.get("/api/jobs/nope/explain"),
        await admin.get("/api/jobs/nope/events"),
    ):
        assert response.status_code == 404, response.request.url
        assert response.json()["error"] == "not_found"


async def test_explain_names_the_missing_model(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("gpu-1", GPU)
    await job_queue.register_worker("gpu-2", GPU)
    spec = {"service_required": "comfyui", "requirements": {"models": ["sdxl"]}}
    job = (await admin.post("/api/jobs", json=spec)).json()

    explanation = (await admin.get(f"/api/jobs/{job['id']}/explain")).json()

    assert explanation["job_id"] == job["id"]
    assert (explanation["serving_service"], explanation["matching_workers"]) == (2, 0)
    counts = {r["requirement"]: r["satisfied_by"] for r in explanation["requirements"]}
    assert counts["models"] == 0
    assert counts["service"] == 2
    assert explanation["nearest_miss"]["worker_id"] in ("gpu-1", "gpu-2")
    assert any("sdxl" in reason for reason in explanation["nearest_miss"]["reasons"])


async def test_explain_gives_the_position_among_runnable_jobs(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    first = (await admin.post("/api/jobs", json={"service_required": "sim"})).json()
    second = (await admin.post("/api/jobs", json={"service_required": "sim"})).json()

    assert (await admin.get(f"/api/jobs/{first['id']}/explain")).json()["position"] == 0
    assert (await admin.get(f"/api/jobs/{second['id']}/explain")).json()["position"] == 1


async def test_explain_gives_the_expected_model_download(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    models = {"fetchable": ["flux"], "sizes": {"flux": 12_000_000_000}}
    caps = WorkerCapabilities.model_validate({"services": ["sim"], "models": {"sim": models}})
    await job_queue.register_worker("w1", caps)
    spec = {"service_required": "sim", "requirements": {"models": ["flux"]}}
    job = (await admin.post("/api/jobs", json=spec)).json()

    explanation = (await admin.get(f"/api/jobs/{job['id']}/explain")).json()

    assert (explanation["model_load_s"], explanation["model_download_s"]) == (6.0, 120.0)
    assert "flux to download, then load" in explanation["model_cost_basis"]


async def test_workflow_lists_its_steps(admin: httpx.AsyncClient) -> None:
    steps = [
        {"service_required": "sim", "workflow_id": "wf-9", "current_step": i, "total_steps": 2}
        for i in (1, 2)
    ]
    await admin.post("/api/jobs/batch", json={"jobs": steps})

    response = await admin.get("/api/workflows/wf-9")
    missing = await admin.get("/api/workflows/wf-none")

    assert response.status_code == 200
    assert [job["current_step"] for job in response.json()["jobs"]] == [1, 2]
    assert missing.status_code == 404


async def test_dead_letters_can_be_listed_and_requeued(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM)
    job = (
        await admin.post("/api/jobs", json={"service_required": "sim", "max_attempts": 1})
    ).json()
    alive = (await admin.post("/api/jobs", json={"service_required": "sim"})).json()
    [claimed] = await job_queue.claim("w1")
    assert claimed.job.id == job["id"]
    error = JobError(failure_class=FailureClass.WORKER_FAULT, message="oom")
    await job_queue.fail("w1", job["id"], claimed.attempt, error)

    listed = (await admin.get("/api/dead-letters")).json()
    requeued = await admin.post(f"/api/dead-letters/{job['id']}/requeue")
    not_dead = await admin.post(f"/api/dead-letters/{alive['id']}/requeue")

    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert listed["jobs"][0]["error"]["message"] == "oom"
    assert requeued.status_code == 200
    assert requeued.json()["status"] == "pending"
    assert not_dead.status_code == 404
    assert (await admin.get("/api/dead-letters")).json()["jobs"] == []


async def test_workers_and_queues_describe_the_fleet(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", SIM, machine_id="m1")
    await admin.post("/api/jobs/batch", json={"jobs": [{"service_required": "sim"}] * 3})
    await job_queue.claim("w1")

    workers = (await admin.get("/api/workers")).json()["workers"]
    queues = (await admin.get("/api/queues")).json()["queues"]
    removed = (await admin.delete("/api/workers/w1")).json()

    assert [(w["worker_id"], w["machine_id"]) for w in workers] == [("w1", "m1")]
    assert workers[0]["capabilities"]["services"] == ["sim"]
    assert len(workers[0]["running"]) == 1
    [sim] = queues
    assert sim["service"] == "sim"
    assert sim["counts"] == {"pending": 2, "assigned": 1}
    assert sim["oldest_wait_ms"] is not None
    assert removed == {"worker_id": "w1", "removed": True}
    assert (await admin.get("/api/workers")).json()["workers"] == []


async def test_an_unknown_service_is_refused_with_the_known_ones(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    typo = await admin.post("/api/jobs", json={"service_required": "comfyiu"})
    in_batch = await admin.post(
        "/api/jobs/batch",
        json={"jobs": [{"service_required": "sim"}, {"service_required": "comfyiu"}]},
    )
    await job_queue.register_worker("w-new", WorkerCapabilities(services=["brand-new"]))
    once_served = await admin.post("/api/jobs", json={"service_required": "brand-new"})

    assert typo.status_code == 422
    assert typo.json()["error"] == "unknown_service"
    assert "'comfyiu'" in typo.json()["message"]
    assert "comfyui" in typo.json()["message"], "the known services are listed"
    assert "EMP_API_SERVICES" in typo.json()["message"]
    assert in_batch.status_code == 422
    assert (await admin.get("/api/jobs", params={"service": "sim"})).json()["jobs"] == []
    assert once_served.status_code == 201
