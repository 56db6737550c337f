"""A seeded namespace for the monitor's benchmark and screenshots: machines, workers, jobs.

``seed`` fills a namespace the way a busy fleet looks: machines with GPUs, services and
startup steps; workers on them; jobs waiting, running (with progress) and finished
(completed and failed); log lines. ``EventDriver`` then produces a steady event rate
through the real queue operations (progress reports, completions, claims).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import (
    GpuInfo,
    LogLine,
    MachineHardware,
    MachinePhase,
    MachineRecord,
    ServiceState,
    ServiceStatus,
    StartupStep,
    StepStatus,
)
from emp_queue.models import ClaimedJob, EventType, FailureClass, JobError, JobSpec
from emp_queue.models import WorkerCapabilities as Caps

SERVICES = ("comfyui", "ollama", "openai", "a1111", "simulation")
GPUS = (("NVIDIA RTX 4090", 24.0), ("NVIDIA A100 80GB", 80.0), ("NVIDIA L40S", 48.0))
POOLS = ("us-4090", "eu-a100", "eu-l40s")
"""A machine's pool follows its GPU type (machine i has GPUS[i % 3] and POOLS[i % 3])."""
STEPS = ("detect_hardware", "install_custom_nodes", "download_models", "start_services")


@dataclass
class Running:
    worker_id: str
    claimed: ClaimedJob
    progress: float = 0.0


def machine(index: int, workers: list[str], services: list[str]) -> MachineRecord:
    gpu_count = 1 + index % 4
    return MachineRecord(
        machine_id=f"machine-{index:03d}",
        phase=MachinePhase.READY if index % 17 else MachinePhase.STARTING,
        hardware=MachineHardware(
            gpus=[
                GpuInfo(
                    index=g,
                    name=GPUS[index % len(GPUS)][0],
                    memory_gb=GPUS[index % len(GPUS)][1],
                    memory_used_gb=round(GPUS[index % len(GPUS)][1] * ((index + g) % 10) / 10, 1),
                )
                for g in range(gpu_count)
            ],
            cpu_cores=16 * gpu_count,
            ram_gb=64.0 * gpu_count,
            gpu_mode="mock",
        ),
        steps=[
            StartupStep(name=name, status=StepStatus.DONE, duration_ms=800 + 1300 * n + index)
            for n, name in enumerate(STEPS)
        ],
        services=[
            ServiceState(
                name=f"{service}-0",
                kind="daemon",
                status=ServiceStatus.RUNNING,
                pid=1000 + index,
                port=8188 + n,
                gpu=0,
            )
            for n, service in enumerate(services)
        ]
        + [
            ServiceState(name=f"worker-{i}", kind="worker", status=ServiceStatus.RUNNING)
            for i in range(len(workers))
        ],
        workers=workers,
        worker_types={service: 1 for service in services},
        started_at=int(time.time() * 1000) - 3_600_000,
        startup_ms=9_000 + 37 * index,
    )


async def seed(
    queue: JobQueue,
    machines: MachineRegistry,
    *,
    jobs: int,
    workers: int,
    machine_count: int,
    completed: int,
    failed: int,
) -> list[Running]:
    """Seed the namespace; returns the running jobs (one per worker) for the event driver."""
    per_machine = max(1, workers // machine_count)
    worker_ids = [f"machine-{w // per_machine:03d}-w{w % per_machine}" for w in range(workers)]
    for index, worker_id in enumerate(worker_ids):
        service = SERVICES[index % len(SERVICES)]
        machine_id = worker_id.rsplit("-w", 1)[0]
        pool = POOLS[int(machine_id.rsplit("-", 1)[1]) % len(POOLS)]
        await queue.register_worker(
            worker_id, Caps(services=[service], pool=pool), machine_id=machine_id
        )
    for m in range(machine_count):
        ids = worker_ids[m * per_machine : (m + 1) * per_machine]
        services = sorted({SERVICES[worker_ids.index(w) % len(SERVICES)] for w in ids})
        await machines.publish(machine(m, ids, services), EventType.MACHINE_STARTUP_COMPLETE)
    specs = [
        JobSpec(
            service_required=SERVICES[i % len(SERVICES)],
            priority=random.Random(i).randint(10, 90),
            payload={"prompt": f"a lighthouse at dusk, variation {i}", "steps": 30},
        )
        for i in range(jobs)
    ]
    for start in range(0, len(specs), 5000):
        await queue.submit_many(specs[start : start + 5000])
    await finish_some(queue, worker_ids, completed, failed)
    running: list[Running] = []
    for worker_id in worker_ids:
        claimed = await queue.claim(worker_id, 1)
        if claimed:
            running.append(Running(worker_id, claimed[0]))
            await queue.report_progress(worker_id, claimed[0].job.id, claimed[0].attempt, 1.0)
    await ship_logs(machines, machine_count)
    return running


async def finish_some(queue: JobQueue, worker_ids: list[str], completed: int, failed: int) -> None:
    done = 0
    for worker_id in itertools.cycle(worker_ids):
        if done >= completed + failed:
            return
        for claimed in await queue.claim(worker_id, 20):
            job = claimed.job
            if done < completed:
                await queue.complete(worker_id, job.id, claimed.attempt, {"seconds": 4.2})
            else:
                error = JobError(
                    message="CUDA out of memory while sampling (tried to allocate 2.1 GiB)",
                    failure_class=FailureClass.JOB_FAULT,
                )
                await queue.fail(worker_id, job.id, claimed.attempt, error)
            done += 1


async def ship_logs(machines: MachineRegistry, machine_count: int) -> None:
    now = int(time.time() * 1000)
    levels = ("info", "info", "info", "warning", "error", "debug")
    # Plain lines as services print them, and structlog JSON lines as emp workers write them.
    messages = (
        "prompt executed in 4.21 seconds",
        json.dumps(
            {
                "event": "job_claimed",
                "level": "info",
                "job_id": "job-0193",
                "attempt": 1,
                "timestamp": "2026-11-29T10:00:00Z",
            }
        ),
        "VRAM 18.2/24.0 GB in use",
        json.dumps(
            {
                "event": "job_failed",
                "level": "warning",
                "job_id": "job-0201",
                "failure_class": "job_fault",
                "error": "CUDA out of memory while sampling "
                "(tried to allocate 2.1 GiB; 23.4 GiB in use by this process)",
            }
        ),
        "websocket closed by peer, reconnecting",
        "queue size 3",
    )
    lines = [
        LogLine(
            ts=now - 120_000 + i * 400,
            machine_id=f"machine-{i % machine_count:03d}",
            service=f"{SERVICES[i % 2]}-0",
            level=levels[i % len(levels)],
            message=messages[i % len(messages)],
        )
        for i in range(300)
    ]
    await machines.ship_logs(lines)


class EventDriver:
    """Produces ``rate`` events per second through real queue operations until stopped."""

    def __init__(self, queue: JobQueue, running: list[Running], rate: int) -> None:
        self.queue = queue
        self.running = running
        self.rate = rate
        self.events = 0
        self.elapsed_s = 0.0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        tick_s = 0.01
        per_tick = max(1, round(self.rate * tick_s))
        start = time.perf_counter()
        cursor = itertools.cycle(range(len(self.running)))
        ticks = 0
        while not self.stopped.is_set():
            ticks += 1
            calls = []
            budget = per_tick
            while budget > 0:
                item = self.running[next(cursor)]
                if ticks % 10 == 0 and budget >= 2:
                    calls.append(self.turn_over(item))
                    budget -= 2  # complete_job + job_assigned
                else:
                    calls.append(self.progress(item))
                    budget -= 1
            await asyncio.gather(*calls)
            self.events += per_tick
            delay = start + ticks * tick_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        self.elapsed_s = time.perf_counter() - start

    async def progress(self, item: Running) -> None:
        item.progress = min(99.0, item.progress + 1.5)
        claimed = item.claimed
        await self.queue.report_progress(
            item.worker_id, claimed.job.id, claimed.attempt, item.progress
        )

    async def turn_over(self, item: Running) -> None:
        claimed = item.claimed
        await self.queue.complete(item.worker_id, claimed.job.id, claimed.attempt, {"ok": True})
        fresh = await self.queue.claim(item.worker_id, 1)
        if fresh:
            item.claimed, item.progress = fresh[0], 0.0
