"""/metrics beyond the queue counters: requests by route, oldest wait, workers by state,
machines' GPUs and services, webhook deliveries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from emp_queue import JobQueue, WorkerCapabilities
from emp_queue.core.machines import MachineRegistry
from emp_queue.machine_models import (
    GpuInfo,
    MachineHardware,
    MachineRecord,
    ServiceState,
    ServiceStatus,
)
from emp_queue.webhooks.intake import GROUP

DEPLOY = Path(__file__).parents[3] / "deploy"


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (await http.get("/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_requests_are_counted_by_route_template_and_status(
    admin: httpx.AsyncClient,
) -> None:
    await admin.get("/api/jobs/not-there")
    await admin.get("/api/jobs/also-not-there")
    await admin.post("/api/jobs", json={"service_required": "sim"})

    samples = await scrape(admin)

    route = {"route": "/api/jobs/{job_id}", "method": "GET"}
    assert samples[key("emp_api_requests_total", **route, status="404")] == 2
    submit = {"route": "/api/jobs", "method": "POST", "status": "201"}
    assert samples[key("emp_api_requests_total", **submit)] == 1
    assert samples[key("emp_api_request_seconds_count", **route)] == 2
    assert samples[key("emp_api_request_seconds_bucket", **route, le="10.0")] == 2


async def test_fleet_figures_come_from_redis(
    admin: httpx.AsyncClient, job_queue: JobQueue, redis_client: Redis
) -> None:
    await job_queue.register_worker("w-a", WorkerCapabilities(services=["sim"], pool="a100"))
    await job_queue.register_worker("w-b", WorkerCapabilities(services=["sim"], pool="a100"))
    await admin.post("/api/jobs", json={"service_required": "sim"})
    machine = MachineRecord(
        machine_id="m1",
        pool="a100",
        hardware=MachineHardware(
            gpus=[
                GpuInfo(
                    index=0, name="A100", memory_gb=80, memory_used_gb=20, utilization_percent=85
                ),
                GpuInfo(index=1, name="A100", memory_gb=80),  # no NVML figures
            ],
            gpu_mode="nvml",
        ),
        services=[
            ServiceState(name="comfyui-0", kind="daemon", status=ServiceStatus.RUNNING),
            ServiceState(name="ollama", kind="daemon", status=ServiceStatus.RESTARTING, restarts=2),
        ],
    )
    await MachineRegistry(redis_client, job_queue.keys, job_queue.events).publish(machine)
    await redis_client.xgroup_create(job_queue.keys.events, GROUP, id="0")
    await redis_client.hset(job_queue.keys.webhook_totals, mapping={"delivered": 5, "retry": 2})

    samples = await scrape(admin)

    assert samples[key("emp_workers", pool="a100", state="idle")] == 2
    assert samples[key("emp_queue_oldest_wait_seconds", service="sim")] >= 0
    gpu = {"machine": "m1", "pool": "a100", "gpu": "0"}
    assert samples[key("emp_machine_gpu_memory_bytes", **gpu)] == 80 * 1024**3
    assert samples[key("emp_machine_gpu_memory_used_bytes", **gpu)] == 20 * 1024**3
    assert samples[key("emp_machine_gpu_utilization_percent", **gpu)] == 85
    unknown = {**gpu, "gpu": "1"}
    assert samples[key("emp_machine_gpu_memory_bytes", **unknown)] == 80 * 1024**3
    assert key("emp_machine_gpu_utilization_percent", **unknown) not in samples
    restarting = {"machine": "m1", "pool": "a100", "state": "restarting"}
    assert samples[key("emp_machine_services", **restarting)] == 1
    assert samples[key("emp_machine_service_restarts_total", machine="m1", service="ollama")] == 2
    assert samples[key("emp_webhook_deliveries_total", outcome="delivered")] == 5
    assert samples[key("emp_webhook_deliveries_pending")] == 0
    # The registrations, the submit and the machine's status: read by no dispatcher yet.
    assert samples[key("emp_webhook_event_lag")] >= 4


async def test_the_dashboard_and_scrape_config_name_only_series_the_api_exposes(
    admin: httpx.AsyncClient,
) -> None:
    text = (await admin.get("/metrics")).text
    families = {family.name for family in text_string_to_metric_families(text)}
    dashboard = json.loads((DEPLOY / "grafana" / "emp-job-queue.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for expression in expressions
        for name in re.findall(r"\bemp_[a-z_]+", expression)
    }

    assert used, "the dashboard queries nothing"
    assert used - families == set()
    assert "/metrics" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()
