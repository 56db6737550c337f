"""Probes, version, metrics, and the app's own background sweep."""

from __future__ import annotations

import asyncio
import socket

import httpx
from redis.asyncio import Redis

from emp_queue import (
    FailureClass,
    JobError,
    JobQueue,
    JobSpec,
    JobStatus,
    WorkerCapabilities,
    __version__,
)
from emp_queue.api.app import create_app
from emp_queue.api.settings import ApiSettings
from emp_queue.core.broker import connect
from emp_queue.core.settings import CoreSettings
from tests.integration.api.conftest import TEST_SERVICES, ApiKeys, bearer


async def test_probes_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).json() == {"status": "ready", "detail": None}
    assert (await client.get("/version")).json() == {"version": __version__}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_ready_is_503_and_routes_are_503_when_redis_is_unreachable(
    core_settings: CoreSettings,
) -> None:
    dead: Redis = connect(f"redis://127.0.0.1:{closed_port()}/0")
    settings = ApiSettings(services=TEST_SERVICES, dev_anonymous=True, sweep_interval_s=None)
    app = create_app(settings, core_settings, dead)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            ready = await http.get("/ready")
            health = await http.get("/health")
            jobs = await http.post("/api/jobs", json={"service_required": "sim"})
    finally:
        await dead.aclose()

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert health.status_code == 200
    assert jobs.status_code == 503
    assert jobs.json()["error"] == "broker_unavailable"


async def test_metrics_report_depth_workers_and_submissions(
    admin: httpx.AsyncClient, job_queue: JobQueue
) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    await admin.post("/api/jobs/batch", json={"jobs": [{"service_required": "sim"}] * 2})

    response = await admin.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'emp_queue_jobs{service="sim",status="pending"} 2.0' in lines
    assert 'emp_api_jobs_submitted_total{service="sim"} 2.0' in lines
    assert "emp_live_workers 1.0" in lines


async def test_two_apps_keep_separate_metrics(
    core_settings: CoreSettings, redis_client: Redis, api_keys: ApiKeys
) -> None:
    settings = ApiSettings(services=TEST_SERVICES, sweep_interval_s=None)
    first, second = (create_app(settings, core_settings, redis_client) for _ in range(2))
    for app, count in ((first, 3), (second, 1)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=bearer(api_keys.admin)
        ) as http:
            for _ in range(count):
                await http.post("/api/jobs", json={"service_required": "sim"})
            text = (await http.get("/metrics")).text
        assert f'emp_api_jobs_submitted_total{{service="sim"}} {count}.0' in text.splitlines()


async def test_the_lifespan_sweeps_the_queue_and_stops_with_the_app(
    core_settings: CoreSettings, redis_client: Redis, job_queue: JobQueue
) -> None:
    job = await job_queue.submit(JobSpec(service_required="sim", queue_ttl_s=0.05))
    app = create_app(
        ApiSettings(services=TEST_SERVICES, sweep_interval_s=0.05), core_settings, redis_client
    )

    async with app.router.lifespan_context(app):
        assert "api-sweep" in {task.get_name() for task in asyncio.all_tasks()}
        async with asyncio.timeout(5):
            async for event in job_queue.events.follow("0-0"):
                if event.job_id == job.id and event.data.get("status") == "expired":
                    break

    assert (await job_queue.get(job.id)).status is JobStatus.EXPIRED
    assert "api-sweep" not in {task.get_name() for task in asyncio.all_tasks()}


async def test_metrics_report_the_fleets_totals_the_same_from_every_replica(
    core_settings: CoreSettings, redis_client: Redis, api_keys: ApiKeys, job_queue: JobQueue
) -> None:
    # The jobs move before any API replica exists: the scripts count, not the replicas.
    await job_queue.register_worker("w", WorkerCapabilities(services=["sim"]))
    await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(3)])
    first, second, third = await job_queue.claim("w", count=3)
    await job_queue.complete("w", first.job.id, first.attempt, None)
    await job_queue.complete("w", second.job.id, second.attempt, None)
    failure = JobError(failure_class=FailureClass.JOB_FAULT, message="bad graph")
    await job_queue.fail("w", third.job.id, third.attempt, failure)

    expected = {
        'emp_jobs_claimed_total{service="sim"} 3.0',
        'emp_jobs_completed_total{service="sim"} 2.0',
        'emp_jobs_failed_total{failure_class="job_fault",service="sim"} 1.0',
        'emp_job_wait_seconds_bucket{le="+Inf",service="sim"} 2.0',
        'emp_job_wait_seconds_count{service="sim"} 2.0',
        'emp_job_run_seconds_bucket{le="0.05",service="sim"} 2.0',
        'emp_job_run_seconds_count{service="sim"} 2.0',
    }
    settings = ApiSettings(services=TEST_SERVICES, sweep_interval_s=None)
    scrapes = []
    for _ in range(2):
        app = create_app(settings, core_settings, redis_client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=bearer(api_keys.admin)
        ) as http:
            text = (await http.get("/metrics")).text
        scrapes.append({line for line in text.splitlines() if line.startswith("emp_job")})
    assert expected <= scrapes[0]
    assert scrapes[0] == scrapes[1]
