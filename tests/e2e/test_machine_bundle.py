"""``emp machine`` boots from an encrypted env bundle: only the key and the file are given."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest
from tests.e2e.test_machine_kill import eventually, spawn_machine
from tests.e2e.worker_processes import until_status

from emp_queue.core.queue import JobQueue
from emp_queue.env.pack import PackedEnv, generate_key, pack_env
from emp_queue.models import JobSpec, JobStatus

pytestmark = pytest.mark.e2e

QUEUE_VARIABLES = ("EMP_REDIS_URL", "EMP_NAMESPACE", "WORKERS", "EMP_MACHINE_ID")


async def test_a_machine_boots_from_its_bundle_and_its_workers_never_see_the_key(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    key = generate_key()
    bundle = tmp_path / "env.enc"
    bundle.write_bytes(
        pack_env(
            PackedEnv(
                profile="production",
                service="machine",
                public={
                    "EMP_REDIS_URL": redis_url,
                    "EMP_NAMESPACE": job_queue.keys.namespace,
                    "WORKERS": "simulation:1",
                    "EMP_MACHINE_ID": "bundled",
                    "EMP_STORAGE_LOCAL_DIR": str(tmp_path / "assets"),
                },
                secret={"EMP_SIMULATION_TOKEN": "from-the-bundle"},
            ),
            key,
        )
    )
    env = {name: value for name, value in os.environ.items() if name not in QUEUE_VARIABLES}
    env |= {
        "EMP_ENV_KEY": key,
        "EMP_ENV_BUNDLE": str(bundle),
        "EMP_HEALTH_PORT": "0",
        "EMP_MACHINE_LOG_DIR": str(tmp_path / "logs"),
    }
    process = spawn_machine(env)
    try:

        async def worker_up() -> bool:
            return "bundled-simulation-0" in await job_queue.live_workers()

        await eventually(worker_up)
        job = await job_queue.submit(JobSpec(service_required="simulation", payload={"steps": 1}))
        await until_status(job_queue, job.id, JobStatus.COMPLETED)

        [worker] = [
            child
            for child in psutil.Process(process.pid).children(recursive=True)
            if "worker" in child.cmdline()
        ]
        worker_env = worker.environ()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)

    assert worker_env["EMP_SIMULATION_TOKEN"] == "from-the-bundle"
    assert worker_env["EMP_NAMESPACE"] == job_queue.keys.namespace
    assert "EMP_ENV_KEY" not in worker_env
