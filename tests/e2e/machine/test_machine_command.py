"""``emp machine`` as a real process: start on fake services, SIGTERM, nothing left running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import MachinePhase

from .conftest import STUB_WORKER, mapping_on_free_ports


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# Four Python processes start and stop here: on a loaded 2-core machine that alone can take
# tens of seconds, and this test is about what happens, not how fast.
@pytest.mark.timeout(180)
async def test_sigterm_stops_everything_and_exits_0(
    redis_url: str, namespace: str, job_queue: JobQueue, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(mapping_on_free_ports().model_dump_json())
    env = {
        **os.environ,
        "EMP_REDIS_URL": redis_url,
        "EMP_NAMESPACE": namespace,
        "WORKERS": "comfyui:1,simulation:2",
        "EMP_GPU_MODE": "mock",
        "EMP_MOCK_GPUS": "1",
        "EMP_MACHINE_SERVICES": "fake",
        "EMP_SERVICE_MAPPING": str(mapping),
        "EMP_HEALTH_PORT": "0",
        "EMP_MACHINE_ID": "m-cli",
        "EMP_MACHINE_LOG_DIR": str(tmp_path / "logs"),
        "EMP_MACHINE_WORKER_COMMAND": json.dumps(STUB_WORKER),
        "EMP_DRAIN_GRACE_S": "2",
    }
    started = time.monotonic()
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emp_queue", "machine", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert agent.stderr is not None
    try:
        async with asyncio.timeout(90):
            while b"ready in" not in (line := await agent.stderr.readline()):
                assert line, "emp machine exited before it was ready"
        ready_s = time.monotonic() - started
        children = psutil.Process(agent.pid).children(recursive=True)
        assert len(children) >= 4  # the ComfyUI fake and three workers (and their own children)
        assert len(await job_queue.live_workers()) == 3
        agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await agent.stderr.read()
            assert await agent.wait() == 0
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    assert all(_gone(child.pid) for child in children)
    assert await job_queue.live_workers() == []
    registry = MachineRegistry(job_queue.redis, job_queue.keys, job_queue.events)
    assert (await registry.get("m-cli")).phase is MachinePhase.STOPPED
    print(f"emp machine start → ready: {ready_s:.2f} s")
