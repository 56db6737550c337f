"""A running job rides out a frozen broker: its handler keeps going, its progress is sent
late, and it finishes on its first attempt with no failure counted.

The server is a Valkey of the test's own, frozen with SIGSTOP (never the shared one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.broker import connect
from emp_queue.testing.replication import FreezableValkey
from emp_queue.worker import JobContext, Worker, WorkerSettings
from emp_queue.worker.progress_buffer import REPORT_WAIT_S

FREEZE_S = REPORT_WAIT_S + 1.5
STEPS = 60
STEP_S = 0.1


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[FreezableValkey]:
    with FreezableValkey(tmp_path / "valkey") as server:
        yield server


async def test_a_job_keeps_running_through_a_frozen_broker(valkey: FreezableValkey) -> None:
    queue = JobQueue(connect(valkey.url), namespace="blip", lease_s=15)
    steps: list[float] = []
    under_way = asyncio.Event()

    async def handler(context: JobContext) -> str:
        for step in range(1, STEPS + 1):
            await asyncio.sleep(STEP_S)
            steps.append(time.monotonic())
            if step == 3:
                under_way.set()
            await context.report_progress(100 * step / STEPS, f"step {step}")
        return "done"

    settings = WorkerSettings(heartbeat_interval_s=0.2, drain_grace_s=1)
    worker = Worker(queue, "w-blip", WorkerCapabilities(services=["sim"]), handler, settings)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        job = await queue.submit(JobSpec(service_required="sim"))
        await asyncio.wait_for(under_way.wait(), 10)
        with valkey.frozen():
            frozen_at = time.monotonic()
            await asyncio.sleep(FREEZE_S)
            thawed_at = time.monotonic()
        async with asyncio.timeout(30):
            while (done := await queue.get(job.id)).status is not JobStatus.COMPLETED:  # noqa: ASYNC110 - the record is what is checked
                await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)
        await queue.redis.aclose()

    # The handler waited at most REPORT_WAIT_S on one report, then went on stepping.
    during = [t for t in steps if frozen_at + REPORT_WAIT_S + 0.5 < t < thawed_at]
    assert during, f"no step ran in the last {FREEZE_S - REPORT_WAIT_S - 0.5:.1f} s of the freeze"
    assert done.attempt == 1
    assert done.failures == 0
    assert done.result == "done"
    assert done.progress == 100.0
