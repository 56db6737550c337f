"""Service-health gating and retries that wake up: a real worker process, real Redis, a fake
OpenAI-compatible server stopped and started on its port as a real one would be."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from redis.asyncio import Redis

from emp_queue import FailureClass, JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.connectors import comfyui_workflows as workflows
from emp_queue.connectors.base import Connector, ServiceUnavailableError
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.connectors.openai import OpenAIConfig, OpenAIConnector
from emp_queue.core.events import STREAM_START
from emp_queue.core.queue import Backoff
from emp_queue.errors import JobFailedError
from emp_queue.hardware import GpuMode, HardwareSettings, detect_hardware
from emp_queue.storage import AssetStorage
from emp_queue.testing.fakes.comfyui import FakeComfyUI
from emp_queue.testing.fakes.openai import FakeOpenAI
from emp_queue.worker import JobContext, Worker, WorkerSettings
from emp_queue.worker.health import ServiceHealth
from emp_queue.worker.process import WorkerProcess
from emp_queue.worker.settings import WorkerProcessSettings

WORKER = "llm-1"


def chat(content: str = "hello", model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


@contextlib.asynccontextmanager
async def worker_process(
    queue: JobQueue,
    storage: AssetStorage,
    base_url: str,
    connector: Connector | None = None,
    **settings: Any,
) -> AsyncIterator[WorkerProcess]:
    connector = connector or OpenAIConnector(OpenAIConfig(base_url=base_url))
    process_settings = WorkerProcessSettings(
        connector=connector.kind, worker_id=WORKER, health_interval_s=0.2, **settings
    )
    machine = detect_hardware(HardwareSettings(gpu_mode=GpuMode.MOCK))
    process = WorkerProcess(process_settings, queue, connector, storage, machine)
    stop = asyncio.Event()
    task = asyncio.create_task(process.run(stop))
    await until(lambda: _is_live(queue))
    try:
        yield process
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def worker_status(queue: JobQueue) -> str | None:
    for info in await queue.workers():
        if info.worker_id == WORKER:
            return info.status
    return None


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.02)


async def _is_live(queue: JobQueue) -> bool:
    return WORKER in await queue.live_workers()


async def all_completed(queue: JobQueue, job_ids: list[str]) -> bool:
    jobs = await queue.get_many(job_ids)
    return all(job.status is JobStatus.COMPLETED for job in jobs)


async def test_a_dead_service_stops_claims_and_jobs_wait_for_it_without_spending_attempts(
    job_queue: JobQueue, asset_storage: AssetStorage
) -> None:
    fake = FakeOpenAI()
    serving = contextlib.AsyncExitStack()
    url = await serving.enter_async_context(fake.running())
    port = urlparse(url).port
    async with worker_process(job_queue, asset_storage, f"{url}/v1"):
        await serving.aclose()  # the service dies
        died = time.monotonic()
        await until(lambda: _status_is(job_queue, "service_down"), timeout_s=5)
        detected_s = time.monotonic() - died

        jobs = await job_queue.submit_many(
            [JobSpec(service_required="openai", payload=chat(f"job {n}")) for n in range(3)]
        )
        await asyncio.sleep(1.0)
        waiting = await job_queue.get_many([job.id for job in jobs])
        explanation = await job_queue.explain(jobs[0].id)

        async with fake.running(port=port):  # back on its port
            await until(lambda: all_completed(job_queue, [job.id for job in jobs]))
            await until(lambda: _status_is(job_queue, "idle"), timeout_s=5)
            finished = await job_queue.get_many([job.id for job in jobs])

    assert detected_s <= 5
    assert [job.status for job in waiting] == [JobStatus.PENDING] * 3
    assert explanation.matching_workers == 1
    assert explanation.service_down_workers == 1
    assert [(job.failures, job.attempt) for job in finished] == [(0, 1)] * 3
    assert [job.result["text"] for job in finished] == [f"You said: job {n}" for n in range(3)]
    changes = [
        e.data["status"] for e in await job_queue.events.read() if e.type == "worker_status_changed"
    ]
    assert "service_down" in changes


async def _status_is(queue: JobQueue, wanted: str) -> bool:
    return await worker_status(queue) == wanted


@pytest.mark.slow
async def test_a_job_running_when_the_service_dies_is_handed_back_then_finished(
    job_queue: JobQueue, asset_storage: AssetStorage
) -> None:
    fake = FakeOpenAI(chunk_delay_s=0.1)
    serving = contextlib.AsyncExitStack()
    url = await serving.enter_async_context(fake.running())
    port = urlparse(url).port
    async with worker_process(job_queue, asset_storage, f"{url}/v1"):
        job = await job_queue.submit(
            JobSpec(service_required="openai", payload=chat(" ".join(["word"] * 60)))
        )
        await until(lambda: _is_running(job_queue, job.id))
        await serving.aclose()
        await until(lambda: _handed_back(job_queue, job.id))
        async with fake.running(port=port):
            await until(lambda: all_completed(job_queue, [job.id]), timeout_s=20)
    finished = await job_queue.get(job.id)

    assert finished.failures == 0
    assert finished.result["finish_reason"] == "stop"


@pytest.mark.slow
async def test_a_comfyui_killed_mid_job_is_noticed_in_seconds_and_its_job_finishes_later(
    job_queue: JobQueue, asset_storage: AssetStorage
) -> None:
    fake = FakeComfyUI(step_delay_s=0.2)
    serving = contextlib.AsyncExitStack()
    url = await serving.enter_async_context(fake.running())
    port = urlparse(url).port
    connector = ComfyUIConnector(ComfyUIConfig(url=url, reconnect_backoff_s=0.05))
    workflow = workflows.txt2img("a cat", checkpoint="sd_xl_base_1.0.safetensors", steps=20)
    async with worker_process(job_queue, asset_storage, url, connector):
        job = await job_queue.submit(
            JobSpec(service_required="comfyui", payload={"workflow": workflow})
        )
        await until(lambda: _is_running(job_queue, job.id))
        await serving.aclose()
        died = time.monotonic()
        await until(lambda: _status_is(job_queue, "service_down"), timeout_s=5)
        detected_s = time.monotonic() - died
        await until(lambda: _handed_back(job_queue, job.id), timeout_s=5)
        async with fake.running(port=port):
            await until(lambda: all_completed(job_queue, [job.id]), timeout_s=30)
    finished = await job_queue.get(job.id)

    assert detected_s <= 5
    assert finished.failures == 0
    assert finished.result["outputs"]


async def _is_running(queue: JobQueue, job_id: str) -> bool:
    return (await queue.get(job_id)).status is JobStatus.IN_PROGRESS


async def _handed_back(queue: JobQueue, job_id: str) -> bool:
    events = await queue.events.read()
    return any(
        e.job_id == job_id and e.data.get("reason") == "service_down"
        for e in events
        if e.type == "job_status_changed"
    )


async def test_twenty_streamed_chats_survive_discovery_on_an_interrupting_server(
    job_queue: JobQueue, asset_storage: AssetStorage
) -> None:
    fake = FakeOpenAI.llamacpp(chunk_delay_s=0.005)
    async with (
        fake.running() as url,
        worker_process(job_queue, asset_storage, f"{url}/v1", capabilities_refresh_s=0.05),
    ):
        served_before = fake.requests_served
        jobs = await job_queue.submit_many(
            [
                JobSpec(
                    service_required="openai",
                    payload=chat(f"chat number {n} please", model="gemma-3-270m-it-Q8_0"),
                )
                for n in range(20)
            ]
        )
        await until(lambda: all_completed(job_queue, [job.id for job in jobs]), timeout_s=30)
        finished = await job_queue.get_many([job.id for job in jobs])
        served = fake.requests_served - served_before

    assert [job.result["text"] for job in finished] == [
        f"You said: chat number {n} please" for n in range(20)
    ]
    assert {job.result["finish_reason"] for job in finished} == {"stop"}
    assert {job.failures for job in finished} == {0}
    assert served > 20  # discovery ran between the jobs (and never cut one)


# Retries that wake up --------------------------------------------------------------------


async def _retry_claim_delay_s(queue: JobQueue, job_id: str) -> tuple[str, float]:
    """Who claimed the retry, and how long after it became claimable by them."""
    events = [e for e in await queue.events.read(STREAM_START) if e.job_id == job_id]
    scheduled = next(e for e in events if e.data.get("not_before"))
    failer = next(e for e in events if e.type == "job_failed" or e.data.get("previous_worker"))
    assigned = [e for e in events if e.type == "job_assigned"][1]
    claimer = assigned.data["worker_id"]
    claimable_ms = int(scheduled.data["not_before"])
    if claimer == failer.data.get("previous_worker"):
        claimable_ms += round(queue.retry_avoid_grace_s * 1000)
    assigned_ms = int(assigned.id.split("-")[0])
    return claimer, (assigned_ms - claimable_ms) / 1000


def failing_once() -> Any:
    failed: set[str] = set()

    async def handler(context: JobContext) -> dict[str, Any]:
        if context.job.id not in failed:
            failed.add(context.job.id)
            raise JobFailedError("service hiccup", failure_class=FailureClass.SERVICE_FAULT)
        return {"ok": True}

    return handler


async def test_a_retry_on_the_only_worker_is_claimed_within_a_second_of_becoming_claimable(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(
        redis_client, namespace=namespace, backoff=Backoff(base_s=0.2), retry_avoid_grace_s=0.5
    )
    settings = WorkerSettings(idle_poll_s=30, sweep_interval_s=30, heartbeat_interval_s=1)
    worker = Worker(queue, "only", WorkerCapabilities(services=["sim"]), failing_once(), settings)
    task = asyncio.create_task(worker.run())
    await worker.registered.wait()
    job = await queue.submit(JobSpec(service_required="sim", payload={}))
    await until(lambda: all_completed(queue, [job.id]))
    worker.stop()
    await task

    claimer, delay_s = await _retry_claim_delay_s(queue, job.id)
    assert claimer == "only"
    assert 0 <= delay_s < 1.0


async def test_a_retry_goes_to_the_idle_other_worker_before_the_grace_ends(
    redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(
        redis_client, namespace=namespace, backoff=Backoff(base_s=0.2), retry_avoid_grace_s=5
    )
    settings = WorkerSettings(idle_poll_s=30, sweep_interval_s=30, heartbeat_interval_s=1)
    caps = WorkerCapabilities(services=["sim"])
    first = Worker(queue, "first", caps, failing_once(), settings)
    running_first = asyncio.create_task(first.run())
    await first.registered.wait()
    job = await queue.submit(JobSpec(service_required="sim", payload={}))
    await until(lambda: _has_failed_once(queue, job.id))

    async def succeed(_context: JobContext) -> dict[str, Any]:
        return {"ok": True}

    second = Worker(queue, "second", caps, succeed, settings)
    running_second = asyncio.create_task(second.run())
    await until(lambda: all_completed(queue, [job.id]))
    first.stop()
    second.stop()
    await asyncio.gather(running_first, running_second)

    claimer, delay_s = await _retry_claim_delay_s(queue, job.id)
    assert claimer == "second"
    assert delay_s < 1.0


async def _has_failed_once(queue: JobQueue, job_id: str) -> bool:
    return (await queue.get(job_id)).failures == 1


async def test_a_job_that_takes_its_service_down_spends_attempts_once_its_budget_is_used(
    job_queue: JobQueue,
) -> None:
    down = asyncio.Event()

    async def probe() -> None:
        if down.is_set():
            raise ServiceUnavailableError("connection refused")

    async def crashes_the_service(_context: JobContext) -> dict[str, Any]:
        down.set()
        asyncio.get_running_loop().call_later(0.5, down.clear)
        raise JobFailedError("connection reset", failure_class=FailureClass.SERVICE_FAULT)

    health = ServiceHealth(probe, interval_s=0.1, timeout_s=1)
    settings = WorkerSettings(outage_hand_backs=1, heartbeat_interval_s=0.2)
    caps = WorkerCapabilities(services=["sim"])
    worker = Worker(job_queue, "w", caps, crashes_the_service, settings, health)
    task = asyncio.create_task(worker.run())
    await worker.registered.wait()
    job = await job_queue.submit(JobSpec(service_required="sim", payload={}, max_attempts=1))
    await until(lambda: _is_failed(job_queue, job.id), timeout_s=15)
    worker.stop()
    await task

    hand_backs = [
        e
        for e in await job_queue.events.read()
        if e.job_id == job.id and e.data.get("reason") == "service_down"
    ]
    assert len(hand_backs) == 1
    assert "the service was down 1 times" in (await job_queue.get(job.id)).error.message


async def _is_failed(queue: JobQueue, job_id: str) -> bool:
    return (await queue.get(job_id)).status is JobStatus.FAILED


async def test_a_comfyui_worker_reports_its_loaded_checkpoint_right_after_the_job(
    job_queue: JobQueue, asset_storage: AssetStorage
) -> None:
    fake = FakeComfyUI()
    checkpoint = "sd_xl_base_1.0.safetensors"
    async with fake.running() as url:
        connector = ComfyUIConnector(ComfyUIConfig(url=url, reconnect_backoff_s=0.05))
        # A refresh period of an hour: only the job's own signal can refresh in time.
        async with worker_process(
            job_queue, asset_storage, url, connector, capabilities_refresh_s=3600
        ):
            assert await _loaded(job_queue) == []
            workflow = workflows.txt2img("a cat", checkpoint=checkpoint, steps=2)
            job = await job_queue.submit(
                JobSpec(service_required="comfyui", payload={"workflow": workflow})
            )
            assert job.requirements["models"] == [checkpoint]  # derived from the workflow
            await until(lambda: all_completed(job_queue, [job.id]))
            await until(lambda: _loaded_is(job_queue, [checkpoint]))


async def _loaded(queue: JobQueue) -> list[str]:
    infos = [info for info in await queue.workers() if info.worker_id == WORKER]
    return infos[0].capabilities.models["comfyui"].loaded if infos else []


async def _loaded_is(queue: JobQueue, wanted: list[str]) -> bool:
    return await _loaded(queue) == wanted
