"""The machine agent in process, on protocol fakes and stub workers, against real Redis."""

from __future__ import annotations

import json
import socket
import sys

import httpx
import psutil
import pytest
from pydantic import SecretStr
from tests.e2e.ports import free_base_port

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.errors import ConfigurationError
from emp_queue.machine.agent import MachineAgent
from emp_queue.machine.components import ComponentManager, ComponentSettings
from emp_queue.machine.health import HealthServer, create_health_app
from emp_queue.machine.placement_loop import ManifestDownloads
from emp_queue.machine.settings import ServicesMode
from emp_queue.machine.startup import ComponentInstallers, InstallProgress, MachineStartupError
from emp_queue.machine_models import MachinePhase, ServiceStatus, StepStatus
from emp_queue.models import JobSpec, WorkerCapabilities

from .conftest import CHILDREN, eventually, mapping_on_free_ports

STEPS = ["health_server", "hardware", "custom_nodes", "models", "services", "workers"]


@pytest.fixture
def registry(job_queue: JobQueue) -> MachineRegistry:
    return MachineRegistry(job_queue.redis, job_queue.keys, job_queue.events)


async def test_startup_runs_its_steps_in_order_and_registers(start_agent, job_queue) -> None:
    begin = await job_queue.events.latest_id()
    async with start_agent(workers="comfyui:1,simulation:2", gpus=1) as (agent, _):
        record = agent.snapshot()
        assert record.phase is MachinePhase.READY
        assert [s.name for s in record.steps] == [*STEPS, "registration"]
        statuses = {s.name: s.status for s in record.steps}
        assert statuses["custom_nodes"] is StepStatus.SKIPPED
        assert statuses["services"] is StepStatus.DONE
        assert {s.name: s.status for s in record.services} == {
            "comfyui-0": ServiceStatus.RUNNING,
            "worker-comfyui-0": ServiceStatus.RUNNING,
            "worker-simulation-0": ServiceStatus.RUNNING,
            "worker-simulation-1": ServiceStatus.RUNNING,
        }
        assert sorted(await job_queue.live_workers()) == sorted(record.workers)
        events = await job_queue.events.read(begin, count=500)
    kinds = [e.type for e in events if e.type != "machine_update"]
    assert kinds[0] == "machine_startup"
    assert kinds[-1] == "machine_startup_complete"
    done = [
        e.data["step"]
        for e in events
        if e.type == "machine_startup_step" and e.data["status"] != "running"
    ]
    assert done == [*STEPS, "registration"]
    complete = next(e for e in events if e.type == "machine_startup_complete")
    assert complete.data["total_ms"] == complete.data["machine"]["startup_ms"] > 0


async def test_workers_wait_for_a_slow_service(start_agent) -> None:
    # The stub worker exits 4 if its service does not answer when it starts.
    mapping = mapping_on_free_ports(
        {
            "daemons": {
                "slow": {
                    "per_gpu": False,
                    "base_port": free_base_port(),
                    "command": [sys.executable, CHILDREN, "serve", "{port}", "--delay-s", "1.5"],
                    "ready_path": "/ready",
                    "url_env": "EMP_SLOW_URL",
                }
            },
            "worker_types": {
                "slowtype": {
                    "connector": "simulation",
                    "services": ["slowtype"],
                    "gpu_bound": False,
                    "daemon": "slow",
                }
            },
        }
    )
    async with start_agent(workers="slowtype:2", services=ServicesMode.REAL, mapping=mapping) as (
        agent,
        _,
    ):
        steps = {s.name: s for s in agent.snapshot().steps}
        assert steps["services"].duration_ms is not None
        assert steps["services"].duration_ms >= 1500
        assert all(s.status is ServiceStatus.RUNNING for s in agent.snapshot().services)


async def test_failed_step_stops_the_machine_with_a_clear_error(start_agent, registry) -> None:
    async with start_agent(workers="simulation:1,telepathy:1", wait_ready=False) as (_, task):
        with pytest.raises(MachineStartupError, match=r"'hardware' failed.*telepathy"):
            await task
    record = await registry.get("m-test")
    assert record.phase is MachinePhase.FAILED
    steps = {s.name: s.status for s in record.steps}
    assert steps["hardware"] is StepStatus.FAILED
    assert steps["workers"] is StepStatus.SKIPPED


async def test_component_installers_run_as_steps_with_progress(start_agent, job_queue) -> None:
    calls: list[str] = []

    class Installer:
        def __init__(self, name: str) -> None:
            self.name = name

        async def install(self, progress: InstallProgress) -> None:
            calls.append(self.name)
            await progress(f"{self.name} half way", 0.5)

    begin = await job_queue.events.latest_id()
    installers = ComponentInstallers(custom_nodes=Installer("nodes"), models=Installer("models"))
    async with start_agent(installers=installers) as (agent, _):
        steps = {s.name: s for s in agent.snapshot().steps}
    assert calls == ["nodes", "models"]
    assert steps["models"].status is StepStatus.DONE
    events = await job_queue.events.read(begin, count=500)
    details = [
        e.data["machine"]["steps"][3]["detail"] for e in events if e.type.startswith("machine")
    ]
    assert "models half way (50%)" in details


async def test_health_api(start_agent) -> None:
    async with start_agent(workers="comfyui:1", gpus=1) as (agent, _):
        base = f"http://127.0.0.1:{agent.health_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/health")).json() == {"status": "ok"}
            assert (await client.get("/ready")).json() == {"ready": True, "phase": "ready"}
            status = (await client.get("/status")).json()
            assert status["hardware"]["gpu_mode"] == "mock"
            assert [s["name"] for s in status["steps"]][-1] == "registration"
            services = (await client.get("/services")).json()
            assert [s["name"] for s in services] == ["comfyui-0", "worker-comfyui-0"]
            logs = (await client.get("/logs/comfyui-0", params={"lines": 5})).json()
            assert any("fake comfyui listening on" in line for line in logs["lines"])
            missing = await client.get("/logs/nope")
            assert missing.status_code == 404
            assert "comfyui-0" in missing.json()["detail"]
            before = agent.processes["comfyui-0"].pid
            assert (await client.post("/restart/comfyui-0")).status_code == 202

            async def restarted() -> bool:
                process = agent.processes["comfyui-0"]
                return process.restarts == 1 and process.status is ServiceStatus.RUNNING

            await eventually(restarted)
            assert agent.processes["comfyui-0"].pid != before


async def test_health_api_requires_the_key_when_set(start_agent) -> None:
    async with start_agent(health_key=SecretStr("s3cret")) as (agent, _):
        base = f"http://127.0.0.1:{agent.health_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/status")).status_code == 401
            wrong = await client.get("/status", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = await client.get("/status", headers={"Authorization": "Bearer s3cret"})
            assert right.json()["machine_id"] == "m-test"


def test_health_api_refuses_a_public_address_without_key(start_agent) -> None:
    with pytest.raises(ConfigurationError, match="EMP_MACHINE_HEALTH_KEY"):
        HealthServer(create_health_app(None, None), "0.0.0.0", 0, None)  # type: ignore[arg-type]


async def test_a_taken_health_port_names_its_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(create_health_app(None, None), "127.0.0.1", port, None)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError) as refused:
            await server.start()
    assert str(refused.value) == (
        f"cannot listen on 127.0.0.1:{port} (EMP_HEALTH_PORT): Address already in use; stop "
        "what uses the port or choose another (0: any free port)"
    )


async def test_control_channel_restarts_a_service(start_agent, registry) -> None:
    async with start_agent(workers="simulation:1") as (agent, _):
        worker = agent.processes["worker-simulation-0"]
        before = worker.pid
        heard = await registry.send_control(
            "m-test", {"action": "restart_service", "service": "worker-simulation-0"}
        )
        assert heard == 1

        async def restarted() -> bool:
            return worker.restarts == 1 and worker.status is ServiceStatus.RUNNING

        await eventually(restarted)
        assert worker.pid != before
        assert before is not None
        assert not psutil.pid_exists(before) or psutil.Process(before).status() == "zombie"


async def test_service_output_reaches_the_log_stream(start_agent, registry) -> None:
    async with start_agent(workers="comfyui:1", gpus=1):

        async def shipped() -> bool:
            lines = await registry.logs(machine_ids=["m-test"])
            services = {line.service for line in lines}
            return {"comfyui-0", "worker-comfyui-0"} <= services

        await eventually(shipped)
        worker_lines = await registry.logs(machine_ids=["m-test"], service="worker-comfyui-0")
        started = next(line for line in worker_lines if "worker_started" in line.message)
        assert json.loads(started.message)["id"] == "m-test-comfyui-0"
        assert started.level == "info"


async def test_stop_drains_workers_and_stops_every_process(
    start_agent, job_queue, registry
) -> None:
    begin = await job_queue.events.latest_id()
    async with start_agent(workers="comfyui:2,ollama:1,simulation:1", gpus=2) as (agent, task):
        pids = [p.pid for p in agent.processes.values()]
        assert len(pids) == 7
        assert all(pid is not None for pid in pids)
    await task
    for pid in pids:
        assert pid is not None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert await job_queue.live_workers() == []
    record = await registry.get("m-test")
    assert record.phase is MachinePhase.STOPPED
    assert {s.status for s in record.services} == {ServiceStatus.STOPPED}
    events = await job_queue.events.read(begin, count=1000)
    assert "machine_shutdown" in [e.type for e in events]
    worker_log = agent.files.tail("worker-simulation-0", 5)
    assert any("worker_stopped" in line for line in worker_log)


async def test_the_agent_sweeps_with_the_fleets_core_settings(
    redis_client, redis_url, namespace, agent_settings
) -> None:
    core = CoreSettings(namespace=namespace, redis_url=redis_url, worker_timeout_s=7, lease_s=12)
    agent = MachineAgent(agent_settings(), redis=redis_client, redis_url=redis_url, core=core)
    # EMP_WORKER_TIMEOUT_S and EMP_LEASE_S reach the agent's evictions, not JobQueue's defaults.
    assert (agent.queue.worker_timeout_s, agent.queue.lease_s) == (7, 12)
    assert agent.queue.keys.namespace == namespace


async def test_placement_reads_the_demand_and_reports_each_decision(
    start_agent, job_queue, tmp_path
) -> None:
    held = {"installed": ["flux.safetensors"], "sizes": {"flux.safetensors": 12 * 10**9}}
    caps = WorkerCapabilities.model_validate({"services": ["comfyui"], "models": {"comfyui": held}})
    await job_queue.register_worker("m-test-gpu", caps, machine_id="m-test")
    needing = {"models": ["flux.safetensors"]}
    await job_queue.submit_many([JobSpec(service_required="comfyui", requirements=needing)] * 2)
    settings = ComponentSettings(manifest=None, cache_dir=tmp_path / "cache")
    executor = ManifestDownloads(ComponentManager(settings), settings)
    begin = await job_queue.events.latest_id()
    async with start_agent(placement_interval_s=0.5, placement_executor=executor):

        async def reported() -> bool:
            events = await job_queue.events.read(begin, count=2000)
            return any(e.type == "machine_placement" and e.data["status"] == "not_done"
                       for e in events)  # fmt: skip

        await eventually(reported)
    events = await job_queue.events.read(begin, count=2000)
    placement = [e.data for e in events if e.type == "machine_placement"]
    assert (placement[0]["action"], placement[0]["model"], placement[0]["status"]) == (
        "load", "flux.safetensors", "started",
    )  # fmt: skip
    assert "2 waiting" in placement[0]["reason"]
    assert placement[1]["status"] == "not_done"
    assert "on request" in placement[1]["detail"]
    assert placement[1]["machine"]["machine_id"] == "m-test"
