"""The client commands (`emp submit`, `emp jobs`, ...) against a running API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emp_queue.cli.main import app
from emp_queue.core.broker import connect
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import GpuInfo, MachineHardware, MachineRecord
from emp_queue.models import NodeClasses, ServiceModels, WorkerCapabilities
from emp_queue.storage import StorageSettings
from tests.integration.api.threaded_api import RunningApi, threaded_api


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=True) as api:
        yield api


def emp(api: RunningApi, *args: str) -> str:
    env = {"EMP_API_URL": api.url, "EMP_API_KEY": api.admin_key}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_submit_wait_prints_the_result(served: RunningApi) -> None:
    output = emp(
        served, "submit", "sim", "--payload", json.dumps({"echo": "from-cli", "steps": 2}),
        "--priority", "80", "--require", "customer_isolation=none", "--wait",
    )  # fmt: skip
    assert "completed" in output
    assert "from-cli" in output


def test_jobs_job_cancel_retry_explain(served: RunningApi) -> None:
    submitted = emp(served, "submit", "nobody-serves-this", "--id", "cli-job-1")
    assert "cli-job-1" in submitted
    assert "unworkable" in submitted
    assert "cli-job-1" in emp(served, "jobs", "--service", "nobody-serves-this")
    explained = json.loads(emp(served, "explain", "cli-job-1"))
    assert explained["serving_service"] == 0
    assert "cancelled" in emp(served, "cancel", "cli-job-1")
    assert "unworkable" in emp(served, "retry", "cli-job-1")
    assert "cli-job-1" in emp(served, "job", "cli-job-1")


def test_workers_and_queues(served: RunningApi) -> None:
    emp(served, "submit", "sim", "--payload", '{"steps": 1}', "--wait")
    workers = emp(served, "workers")
    assert "sim-worker" in workers
    assert "sim" in workers
    assert "completed 1" in emp(served, "queues")


def test_workers_show_models_node_count_and_health(
    served: RunningApi, redis_url: str, namespace: str
) -> None:
    async def register() -> None:
        redis = connect(redis_url)
        queue = JobQueue(redis, namespace=namespace)
        models = {"comfyui": ServiceModels(installed=["flux.safetensors", "sdxl.safetensors"])}
        nodes = NodeClasses.of(["KSampler", "SaveImage", "IPAdapterApply"])
        capabilities = WorkerCapabilities(services=["comfyui"], models=models, nodes=nodes)
        await queue.register_worker("comfy-1", capabilities)
        await queue.heartbeat("comfy-1", status="service_down")
        await redis.aclose()

    asyncio.run(register())
    env = {"EMP_API_URL": served.url, "EMP_API_KEY": served.admin_key, "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["workers"], env=env, catch_exceptions=False)
    [row] = [line for line in result.output.splitlines() if "comfy-1" in line]
    cells = [cell.strip() for cell in row.split("│")]
    assert "service_down" in cells
    assert "flux.safetensors, sdxl.safetensors" in cells
    assert "3" in cells


def test_machines_list_and_remove(served: RunningApi, redis_url: str, namespace: str) -> None:
    async def publish() -> None:
        redis = connect(redis_url)
        queue = JobQueue(redis, namespace=namespace)
        hardware = MachineHardware(gpus=[GpuInfo(index=0, name="RTX 4090", memory_gb=24)])
        record = MachineRecord(machine_id="box-1", phase="ready", hardware=hardware)
        await MachineRegistry(redis, queue.keys, queue.events).publish(record)
        await redis.aclose()

    asyncio.run(publish())
    listed = emp(served, "machines")
    assert "box-1" in listed
    assert "RTX 4090 24 GB" in listed
    assert "0 job(s) requeued" in emp(served, "machines", "--remove", "box-1")
    assert "No machines." in emp(served, "machines")


def test_customers_set_and_show(served: RunningApi) -> None:
    output = emp(
        served, "customers", "set", "acme", "--weight", "3", "--max-running", "4",
        "--max-running-service", "sim=2", "--max-pending", "50",
    )  # fmt: skip
    assert "acme" in output
    assert "4 (sim 2)" in output
    shown = emp(served, "customers", "show", "acme")
    assert "acme" in shown
    assert "50" in shown
    assert "acme" in emp(served, "customers", "show")
    bad = CliRunner().invoke(
        app,
        ["customers", "set", "acme", "--max-running-service", "sim"],
        env={"EMP_API_URL": served.url, "EMP_API_KEY": served.admin_key},
    )
    assert bad.exit_code == 2
    assert "SERVICE=N" in bad.output


def test_usage_lists_what_ran(served: RunningApi) -> None:
    emp(served, "submit", "sim", "--payload", '{"steps": 1}', "--wait")
    output = emp(served, "usage", "--by-day")
    assert "sim" in output
    assert "No usage" not in output


def test_upload_prints_the_ref_of_the_stored_file(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    storage = StorageSettings(local_dir=tmp_path / "assets")
    image = tmp_path / "in.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    with threaded_api(redis_url, namespace, with_worker=False, storage=storage) as api:
        answer = json.loads(emp(api, "upload", str(image), "--customer", "acme"))

    assert answer["ref"].startswith("local://assets/uploads/acme/up-")
    assert answer["content_type"] == "image/png"  # from the file's name
    assert (tmp_path / "assets" / "assets" / answer["key"]).read_bytes() == image.read_bytes()
