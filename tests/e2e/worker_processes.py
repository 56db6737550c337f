"""Starting real ``emp worker`` processes for the end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emp_queue.core.queue import JobQueue
from emp_queue.models import Job, JobStatus

EMP = Path(sys.executable).parent / "emp"
REGISTER_TIMEOUT_S = 60
"""A worker registers in ~1 s on a quiet machine; on a loaded 2-core one its start (imports,
connector start) was seen past 20 s. The tests check what happens, not how fast."""


def worker_env(redis_url: str, namespace: str, assets: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "EMP_REDIS_URL": redis_url,
        "EMP_NAMESPACE": namespace,
        "EMP_STORAGE_LOCAL_DIR": str(assets),
        "EMP_WORKER_HEARTBEAT_INTERVAL_S": "0.3",
        "EMP_WORKER_SWEEP_INTERVAL_S": "0.3",
        "EMP_LOG_LEVEL": "INFO",
        **extra,
    }


@contextmanager
def worker_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """An ``emp worker`` child; killed at the end if the test left it running."""
    process = subprocess.Popen(
        [str(EMP), "worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def until_registered(queue: JobQueue, worker_id: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while worker_id not in await queue.live_workers():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"emp worker exited {process.returncode}:\n{output}")
        assert time.monotonic() < deadline, f"worker {worker_id} never registered"
        await asyncio.sleep(0.05)


async def until_status(
    queue: JobQueue, job_id: str, *statuses: JobStatus, timeout_s: float = 20
) -> Job:
    deadline = time.monotonic() + timeout_s
    while True:
        job = await queue.get(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job.status}, not {statuses}"
        await asyncio.sleep(0.02)
