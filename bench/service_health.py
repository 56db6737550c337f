"""Service outages and retries: how fast a worker notices, and what its jobs pay.

    python -m bench.service_health [--rounds N] [--write-docs]

A private Valkey (the embedded binary); one real ``WorkerProcess`` with the openai
connector against the fake OpenAI server, stopped and started again on its port as a real
server restarting would be. Figures:

* **detection**: the server stops → the worker's registry entry says ``service_down``;
* **outage jobs**: 3 jobs submitted while the only service is down — failures they were
  charged, and the time from the server's return to the last one completed;
* **retry pickup**: a job failed once (service fault) on the only worker, from the moment
  it became claimable by that worker (backoff plus the avoid grace) to its claim.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench.docs_section import write_section
from bench.harness import cpu_name as _cpu
from emp_queue.connectors.openai import OpenAIConfig, OpenAIConnector
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.events import STREAM_START
from emp_queue.core.queue import Backoff, JobQueue
from emp_queue.errors import JobFailedError
from emp_queue.hardware import GpuMode, HardwareSettings, detect_hardware
from emp_queue.models import FailureClass, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.storage.settings import StorageSettings, build_asset_storage
from emp_queue.testing.fakes.openai import FakeOpenAI
from emp_queue.worker import JobContext, Worker, WorkerSettings
from emp_queue.worker.process import WorkerProcess
from emp_queue.worker.settings import WorkerProcessSettings

RESULTS = Path(__file__).parent / "results" / "service_health.json"
WORKER = "bench-llm"


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


async def outage_round(queue: JobQueue, assets: Path) -> dict[str, float]:
    fake = FakeOpenAI()
    serving = contextlib.AsyncExitStack()
    url = await serving.enter_async_context(fake.running())
    port = urlparse(url).port
    settings = WorkerProcessSettings(connector="openai", worker_id=WORKER)
    process = WorkerProcess(
        settings,
        queue,
        OpenAIConnector(OpenAIConfig(base_url=f"{url}/v1")),
        build_asset_storage(StorageSettings(local_dir=assets)),
        detect_hardware(HardwareSettings(gpu_mode=GpuMode.MOCK)),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(process.run(stop))

    async def status_is(wanted: str) -> bool:
        return any(w.worker_id == WORKER and w.status == wanted for w in await queue.workers())

    await until(lambda: status_is("idle"))
    await serving.aclose()
    died = time.perf_counter()
    await until(lambda: status_is("service_down"))
    detected_s = time.perf_counter() - died
    spec = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    jobs = await queue.submit_many([JobSpec(service_required="openai", payload=spec)] * 3)
    ids = [job.id for job in jobs]
    await asyncio.sleep(2)
    async with fake.running(port=port):
        back = time.perf_counter()

        async def all_done() -> bool:
            found = await queue.get_many(ids)
            return all(job.status is JobStatus.COMPLETED for job in found)

        await until(all_done)
        completed_s = time.perf_counter() - back
        failures = sum(job.failures for job in await queue.get_many(ids))
        stop.set()
        await task
    return {"detected_s": detected_s, "completed_s": completed_s, "failures": failures}


async def retry_round(queue: JobQueue) -> float:
    failed: set[str] = set()

    async def once(context: JobContext) -> dict[str, Any]:
        if context.job.id not in failed:
            failed.add(context.job.id)
            raise JobFailedError("hiccup", failure_class=FailureClass.SERVICE_FAULT)
        return {}

    settings = WorkerSettings(idle_poll_s=30, sweep_interval_s=30)
    worker = Worker(queue, "bench-only", WorkerCapabilities(services=["sim"]), once, settings)
    task = asyncio.create_task(worker.run())
    await worker.registered.wait()
    job = await queue.submit(JobSpec(service_required="sim", payload={}))

    async def done() -> bool:
        return (await queue.get(job.id)).status is JobStatus.COMPLETED

    await until(done)
    worker.stop()
    await task
    events = [e for e in await queue.events.read(STREAM_START) if e.job_id == job.id]
    not_before = next(int(e.data["not_before"]) for e in events if e.data.get("not_before"))
    claimable_ms = not_before + queue.retry_avoid_grace_s * 1000
    second_claim = [e for e in events if e.type == "job_assigned"][1]
    return (int(second_claim.id.split("-")[0]) - claimable_ms) / 1000


async def measure(url: str, rounds: int) -> dict[str, Any]:
    redis = connect(url)
    outages, retries = [], []
    with tempfile.TemporaryDirectory() as assets:
        for n in range(rounds):
            queue = JobQueue(redis, namespace=f"health-bench-{n}")
            outages.append(await outage_round(queue, Path(assets)))
            await queue.purge()
            queue = JobQueue(redis, namespace=f"retry-bench-{n}", backoff=Backoff(base_s=0.5))
            retries.append(await retry_round(queue))
            await queue.purge()
    await redis.aclose()
    return {"rounds": rounds, "outages": outages, "retries_s": retries}


def render(results: dict[str, Any]) -> str:
    outages = results["outages"]
    detected = [o["detected_s"] for o in outages]
    completed = [o["completed_s"] for o in outages]
    failures = sum(o["failures"] for o in outages)
    retries = results["retries_s"]
    rounds = results["rounds"]
    return "\n".join(
        [
            f"Measured {results['date']} on {results['machine']} with "
            "`python -m bench.service_health`.",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| service killed → worker `service_down` ({rounds} rounds) | median "
            f"**{statistics.median(detected):.2f} s**, max {max(detected):.2f} s | ≤ 5 s |",
            f"| jobs submitted while the only service is down: failures charged "
            f"({3 * rounds} jobs) | **{failures}** | 0 |",
            f"| service back → last of those 3 jobs completed | median "
            f"**{statistics.median(completed):.2f} s**, max {max(completed):.2f} s | — |",
            f"| retry on the only worker: claimable → claimed ({rounds} rounds) | median "
            f"**{statistics.median(retries) * 1000:.0f} ms**, max {max(retries) * 1000:.0f} ms "
            "| ≤ 1 s |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--render", action="store_true", help="render the saved results")
    args = parser.parse_args()
    if args.render:
        results = json.loads(RESULTS.read_text())
    else:
        with (
            tempfile.TemporaryDirectory() as data,
            EmbeddedValkey(Path(data), persistent=False) as valkey,
        ):
            results = asyncio.run(measure(valkey.url, args.rounds))
        results["date"] = time.strftime("%Y-%m-%d")
        results["machine"] = f"{platform.machine()}, {platform.python_version()}, {_cpu()}"
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    text = render(results)
    print(text)
    if args.write_docs:
        write_section("service-health", "Service outages and retries (issue 14)", text)


if __name__ == "__main__":
    main()
