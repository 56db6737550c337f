"""A whole machine vanishes (SIGKILL to every process): another machine finishes its job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, JobStatus

pytestmark = pytest.mark.e2e


def spawn_machine(env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "emp_queue", "machine"]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


@asynccontextmanager
async def machine(
    machine_id: str,
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "EMP_REDIS_URL": redis_url,
        "EMP_NAMESPACE": namespace,
        "WORKERS": "simulation:1",
        "EMP_MACHINE_ID": machine_id,
        "EMP_HEALTH_PORT": "0",
        "EMP_MACHINE_LOG_DIR": str(tmp_path / machine_id),
        "EMP_MACHINE_STATUS_INTERVAL_S": "0.5",
        "EMP_STORAGE_LOCAL_DIR": str(tmp_path / "assets"),
        "EMP_LEASE_S": "1.5",
        "EMP_WORKER_HEARTBEAT_INTERVAL_S": "0.3",
        "EMP_WORKER_SWEEP_INTERVAL_S": "0.3",
        **(extra_env or {}),
    }
    process = spawn_machine(env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 30)


async def eventually(check: Callable[[], object], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():  # type: ignore[misc]
            return
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_jobs_of_a_killed_machine_finish_on_another(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    registry = MachineRegistry(job_queue.redis, job_queue.keys, job_queue.events, timeout_s=2)
    namespace = job_queue.keys.namespace
    async with machine("doomed", redis_url, namespace, tmp_path) as doomed:

        async def doomed_ready() -> bool:
            return "doomed-simulation-0" in await job_queue.live_workers()

        await eventually(doomed_ready)
        job = await job_queue.submit(
            JobSpec(service_required="simulation", payload={"steps": 40, "step_delay_s": 0.05})
        )

        async def running() -> bool:
            return (await job_queue.get(job.id)).status is JobStatus.IN_PROGRESS

        await eventually(running)
        victims = [doomed, *psutil.Process(doomed.pid).children(recursive=True)]
        for process in victims:  # the whole machine, at once, with no chance to clean up
            process.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)

    async with machine("rescuer", redis_url, namespace, tmp_path):

        async def finished() -> bool:
            return (await job_queue.get(job.id)).status is JobStatus.COMPLETED

        await eventually(finished, timeout_s=60)

        async def doomed_offline() -> bool:
            return not (await registry.get("doomed")).online

        await eventually(doomed_offline)

    done = await job_queue.get(job.id)
    assert done.worker_id == "rescuer-simulation-0"
    assert done.attempt == 2
    assert (done.failures, done.lost_leases) == (0, 1), "preempted, not failed"
