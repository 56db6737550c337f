"""An in-process machine agent on fake services, with ports nobody else uses."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from tests.e2e.ports import free_base_port

from emp_queue.core.settings import CoreSettings
from emp_queue.hardware import GpuMode, HardwareSettings
from emp_queue.machine.agent import MachineAgent
from emp_queue.machine.mapping import ServiceMapping, load_mapping
from emp_queue.machine.settings import MachineSettings, ServicesMode

HERE = Path(__file__).parent
STUB_WORKER = [sys.executable, str(HERE / "stub_worker.py"), "--require-url"]
CHILDREN = str(HERE / "children.py")


def mapping_on_free_ports(extra: dict[str, Any] | None = None) -> ServiceMapping:
    document = load_mapping().model_dump()
    for daemon in document["daemons"].values():
        daemon["base_port"] = free_base_port()
    for section, entries in (extra or {}).items():
        document[section].update(entries)
    return ServiceMapping.model_validate(document)


AgentFactory = Callable[..., Any]


@pytest.fixture
def agent_settings(tmp_path: Path) -> Callable[..., MachineSettings]:
    def build(**overrides: Any) -> MachineSettings:
        values: dict[str, Any] = {
            "machine_id": "m-test",
            "workers": "simulation:1",
            "services": ServicesMode.FAKE,
            "log_dir": tmp_path / "logs",
            "health_port": 0,
            "status_interval_s": 0.5,
            "drain_grace_s": 2.0,
            "stop_grace_s": 3.0,
            "restart_backoff_s": 0.1,
            "worker_command": STUB_WORKER,
        } | overrides
        return MachineSettings(**values)

    return build


@pytest.fixture
def start_agent(
    redis_client: Redis,
    redis_url: str,
    namespace: str,
    agent_settings: Callable[..., MachineSettings],
) -> Callable[..., Any]:
    @asynccontextmanager
    async def run(
        *, mapping: ServiceMapping | None = None, gpus: int = 1, wait_ready: bool = True, **kw: Any
    ) -> AsyncIterator[tuple[MachineAgent, asyncio.Task[None]]]:
        installers = kw.pop("installers", None)
        placement_executor = kw.pop("placement_executor", None)
        agent = MachineAgent(
            agent_settings(**kw),
            redis=redis_client,
            redis_url=redis_url,
            core=CoreSettings(namespace=namespace, redis_url=redis_url),
            hardware_settings=HardwareSettings(gpu_mode=GpuMode.MOCK, mock_gpus=gpus),
            mapping=mapping or mapping_on_free_ports(),
            installers=installers,
            placement_executor=placement_executor,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            if wait_ready:
                await _ready_or_failed(agent, task)
            yield agent, task
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)

    return run


async def _ready_or_failed(agent: MachineAgent, task: asyncio.Task[None]) -> None:
    ready = asyncio.create_task(agent.ready.wait())
    async with asyncio.timeout(30):
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        task.result()
        raise AssertionError("the agent stopped before it was ready")


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)
