"""``emp worker`` as a real process: jobs, assets, capabilities, cancel, timeout, drain, kill."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.e2e.worker_processes import (
    EMP,
    until_registered,
    until_status,
    worker_env,
    worker_process,
)

from emp_queue.core.queue import JobQueue
from emp_queue.media import png_size
from emp_queue.models import JobSpec, JobStatus

pytestmark = pytest.mark.e2e

LONG = {"steps": 200, "step_delay_s": 0.05}


def sim_job(payload: dict[str, object], **fields: object) -> JobSpec:
    return JobSpec(service_required="simulation", payload=payload, **fields)  # type: ignore[arg-type]


async def test_a_job_runs_and_its_image_is_stored_not_inlined(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(
        redis_url, job_queue.keys.namespace, tmp_path, EMP_GPU_MODE="mock", EMP_MOCK_GPUS="2",
        EMP_MOCK_GPU_MEMORY_GB="48", EMP_WORKER_GPU_INDEX="1",
    )  # fmt: skip
    with worker_process(env, "--worker-id", "w-img", "--machine-id", "box") as process:
        await until_registered(job_queue, "w-img", process)
        job = await job_queue.submit(sim_job({"steps": 3, "image": {"width": 32, "height": 16}}))
        done = await until_status(job_queue, job.id, JobStatus.COMPLETED)

        [info] = await job_queue.workers()

    [output] = done.result["outputs"]
    stored = tmp_path / output["bucket"] / output["key"]
    assert png_size(stored.read_bytes()) == (32, 16)
    assert output["size"] == stored.stat().st_size
    assert output["content_type"] == "image/png"
    assert info.machine_id == "box"
    assert info.capabilities.models["simulation"].installed == ["sim-large", "sim-small"]
    assert info.capabilities.hardware.gpu_count == 1
    assert info.capabilities.hardware.gpu_memory_gb == 48


async def test_cancel_aborts_the_running_job_within_a_second(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, job_queue.keys.namespace, tmp_path)
    with worker_process(env, "--worker-id", "w-cancel") as process:
        await until_registered(job_queue, "w-cancel", process)
        long = await job_queue.submit(sim_job(LONG))
        await until_status(job_queue, long.id, JobStatus.IN_PROGRESS)

        await job_queue.cancel(long.id)
        cancelled_at = time.monotonic()
        short = await job_queue.submit(sim_job({"steps": 1, "step_delay_s": 0}))
        await until_status(job_queue, short.id, JobStatus.COMPLETED, timeout_s=5)

    # One slot: the short job could only run once the cancelled one had really stopped.
    assert time.monotonic() - cancelled_at < 1.0
    assert (await job_queue.get(long.id)).status == JobStatus.CANCELLED


async def test_timeout_stops_the_work_and_the_worker_goes_on(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, job_queue.keys.namespace, tmp_path)
    with worker_process(env, "--worker-id", "w-timeout") as process:
        await until_registered(job_queue, "w-timeout", process)
        slow = await job_queue.submit(sim_job(LONG, timeout_s=0.5))
        timed_out = await until_status(job_queue, slow.id, JobStatus.TIMEOUT)
        progress_at_timeout = timed_out.progress
        after = await job_queue.submit(sim_job({"steps": 1, "step_delay_s": 0}))
        await until_status(job_queue, after.id, JobStatus.COMPLETED, timeout_s=5)

    assert timed_out.error is not None
    assert "timeout_s=0.5" in timed_out.error.message
    assert (await job_queue.get(slow.id)).progress == progress_at_timeout


async def test_sigterm_hands_the_running_job_back_and_exits_cleanly(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, job_queue.keys.namespace, tmp_path, EMP_WORKER_DRAIN_GRACE_S="0.3")
    with worker_process(env, "--worker-id", "w-drain") as process:
        await until_registered(job_queue, "w-drain", process)
        job = await job_queue.submit(sim_job(LONG))
        await until_status(job_queue, job.id, JobStatus.IN_PROGRESS)
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(process.wait, 10)

    handed_back = await job_queue.get(job.id)
    assert exit_code == 0
    assert handed_back.status in (JobStatus.PENDING, JobStatus.UNWORKABLE)
    assert handed_back.failures == 0, "a drained job is handed back, never failed"
    assert "w-drain" not in await job_queue.live_workers()
    with worker_process(env, "--worker-id", "w-next") as successor:
        await until_registered(job_queue, "w-next", successor)
        finished = await until_status(job_queue, job.id, JobStatus.COMPLETED, timeout_s=30)
    assert finished.worker_id == "w-next"


async def test_a_killed_workers_job_is_finished_by_another_after_its_lease(
    job_queue: JobQueue, redis_url: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url, job_queue.keys.namespace, tmp_path, EMP_LEASE_S="1.5")
    job = await job_queue.submit(sim_job({"steps": 20, "step_delay_s": 0.05}))
    with worker_process(env, "--worker-id", "w-doomed") as doomed:
        await until_registered(job_queue, "w-doomed", doomed)
        await until_status(job_queue, job.id, JobStatus.IN_PROGRESS)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    with worker_process(env, "--worker-id", "w-rescue") as rescue:
        await until_registered(job_queue, "w-rescue", rescue)
        finished = await until_status(job_queue, job.id, JobStatus.COMPLETED, timeout_s=30)

    assert finished.worker_id == "w-rescue"
    assert finished.attempt == 2
    assert (finished.failures, finished.lost_leases) == (0, 1), "killed, not failed"


def test_an_unknown_connector_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(EMP), "worker", "--connector", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown connector 'nope'" in result.stderr
    assert "simulation" in result.stderr
    assert "Traceback" not in result.stderr
