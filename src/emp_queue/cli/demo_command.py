"""``emp demo``: the core engine at work, live in the terminal.

Three simulated workers with different capabilities serve a mixed queue: each job goes
to a worker that can run it, a flaky job is retried elsewhere, a running job is
cancelled, and a job no worker can run is flagged unworkable with the reason.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from emp_queue.core.broker import broker_url, connect
from emp_queue.core.events import Event
from emp_queue.core.matching import JobClass, mismatches
from emp_queue.core.queue import Backoff, JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass, JobSpec, WorkerCapabilities
from emp_queue.worker import JobContext, Worker, WorkerSettings

WORKERS: dict[str, WorkerCapabilities] = {
    "gpu-24gb": WorkerCapabilities.model_validate(
        {
            "services": ["comfyui"],
            "hardware": {"gpu_count": 1, "gpu_memory_gb": 24, "gpu_model": "RTX 4090"},
            "models": {"comfyui": {"installed": ["sdxl.safetensors"]}},
            "pool": "fast",
        }
    ),
    "gpu-80gb": WorkerCapabilities.model_validate(
        {
            "services": ["comfyui"],
            "hardware": {"gpu_count": 1, "gpu_memory_gb": 80, "gpu_model": "A100"},
            "models": {"comfyui": {"installed": ["sdxl.safetensors", "flux-dev.safetensors"]}},
            "pool": "heavy",
        }
    ),
    "llm": WorkerCapabilities.model_validate(
        {"services": ["ollama"], "models": {"ollama": {"installed": ["llama3.1:8b"]}}}
    ),
}


def _job(name: str, service: str, requirements: dict[str, Any], **payload: Any) -> JobSpec:
    return JobSpec(
        service_required=service, requirements=requirements, payload={"name": name, **payload}
    )


def demo_jobs(count: int) -> list[JobSpec]:
    sdxl = {"models": ["sdxl.safetensors"]}
    flux = {"models": ["flux-dev.safetensors"], "hardware": {"gpu_memory_gb": 48}}
    rotation: list[tuple[str, str, dict[str, Any]]] = [
        ("portrait", "comfyui", sdxl),
        ("video", "comfyui", flux),
        ("chat", "ollama", {"models": ["llama3.1:8b"]}),
        ("thumbnail", "comfyui", {"pool": "fast"}),
    ]
    jobs = [
        _job(f"{name} #{n + 1}", service, req, steps=4 + n % 4)
        for n, (name, service, req) in zip(
            range(count), rotation * (count // len(rotation) + 1), strict=False
        )
    ]
    jobs.append(_job("flaky upscale", "comfyui", sdxl, steps=3, flaky=True))
    jobs.append(_job("long render (cancelled)", "comfyui", flux, steps=40, cancel_at=25))
    jobs.append(_job("needs an H100", "comfyui", {"hardware": {"gpu_model": "H100"}}, steps=2))
    return jobs


async def simulate(context: JobContext, step_s: float) -> dict[str, Any]:
    payload = context.job.payload
    if payload.get("flaky") and context.job.failures == 0:
        raise JobFailedError(
            "simulated 502 from the service", failure_class=FailureClass.SERVICE_FAULT
        )
    steps = int(payload.get("steps", 4))
    for step in range(steps):
        await asyncio.sleep(step_s)
        await context.report_progress(100 * (step + 1) / steps, f"step {step + 1}/{steps}")
    return {"text": f"{payload['name']} done", "steps": steps}


@dataclass
class Row:
    name: str
    service: str
    status: str = "pending"
    worker: str = ""
    progress: float = 0.0
    attempts: int = 1
    cancel_at: float | None = None


@dataclass
class Board:
    rows: dict[str, Row] = field(default_factory=dict)

    def apply(self, event: Event) -> None:
        row = self.rows.get(event.job_id or "")
        if row is None:
            return
        data = event.data
        if "status" in data and event.type != "job_failed":
            row.status = data["status"]
        if event.type == "job_assigned":
            row.status, row.worker, row.progress = "assigned", data["worker_id"], 0.0
            row.attempts = data["attempt"]
        elif event.type == "update_job_progress" and "progress" in data:
            row.progress = data["progress"]
        elif event.type == "complete_job":
            row.status, row.progress = "completed", 100.0
        elif event.type == "job_failed":
            row.status = data["status"]
        elif event.type == "job_cancelled":
            row.status = "cancelled"

    def settled(self) -> bool:
        return all(
            row.status in ("completed", "failed", "cancelled", "unworkable", "expired")
            for row in self.rows.values()
        )

    def render(self) -> Table:
        table = Table("job", "service", "status", "worker", "try", "progress", expand=False)
        colours = {
            "completed": "green",
            "failed": "red",
            "cancelled": "yellow",
            "unworkable": "magenta",
        }
        for row in self.rows.values():
            colour = colours.get(row.status, "cyan")
            table.add_row(
                row.name, row.service, f"[{colour}]{row.status}[/]", row.worker, str(row.attempts),
                ProgressBar(total=100, completed=row.progress, width=24),
            )  # fmt: skip
        return table


async def run_demo(url: str, namespace: str, count: int, step_s: float, console: Console) -> Board:
    redis = connect(url, namespace=namespace)
    queue = JobQueue(redis, namespace=namespace, backoff=Backoff(base_s=0.5, cap_s=2.0))
    await queue.purge()
    workers = [
        Worker(
            JobQueue(connect(url, namespace=namespace), namespace=namespace),
            worker_id,
            capabilities,
            lambda context: simulate(context, step_s),
            WorkerSettings(concurrency=2, heartbeat_interval_s=1.0, drain_grace_s=5.0),
        )
        for worker_id, capabilities in WORKERS.items()
    ]
    board = Board()
    start = await queue.events.latest_id()
    try:
        async with asyncio.TaskGroup() as tasks:
            for worker in workers:
                tasks.create_task(worker.run())
            await asyncio.gather(*(worker.registered.wait() for worker in workers))
            for job in await queue.submit_many(demo_jobs(count)):
                board.rows[job.id] = Row(
                    job.payload["name"], job.service_required, job.status.value,
                    cancel_at=job.payload.get("cancel_at"),
                )  # fmt: skip
            await _watch(queue, board, start, console)
            for worker in workers:
                worker.stop()
    finally:
        for worker in workers:
            await worker.queue.redis.aclose()
        await _explain_unworkable(queue, board, console)
        await redis.aclose()
    return board


async def _watch(queue: JobQueue, board: Board, start: str, console: Console) -> None:
    deadline = time.monotonic() + 120
    with Live(board.render(), console=console, refresh_per_second=8) as live:
        async for event in queue.events.follow(start, block_ms=200):
            board.apply(event)
            row = board.rows.get(event.job_id or "")
            if row and row.cancel_at is not None and row.progress >= row.cancel_at:
                row.cancel_at = None
                await queue.cancel(event.job_id or "", "cancelled by the demo")
            live.update(board.render())
            if board.settled() or time.monotonic() > deadline:
                return


async def _explain_unworkable(queue: JobQueue, board: Board, console: Console) -> None:
    for job_id, row in board.rows.items():
        if row.status != "unworkable":
            continue
        job = await queue.get(job_id)
        job_class = JobClass(job.service_required, job.customer_id, job.requirements)
        console.print(f"\n[magenta]{row.name}[/] waits as unworkable; no worker fits it:")
        for worker_id, capabilities in WORKERS.items():
            reasons = "; ".join(mismatches(job_class, capabilities)) or "matches"
            console.print(f"  {worker_id}: {reasons}")


def demo(
    jobs: Annotated[int, typer.Option(min=1, max=500, help="How many ordinary jobs.")] = 16,
    step_s: Annotated[float, typer.Option(min=0.0, help="Seconds per simulated step.")] = 0.25,
    namespace: Annotated[
        str, typer.Option(help="Namespace the demo owns (emptied first).")
    ] = "emp-demo",
) -> None:
    """Run the core demo: simulated workers with different capabilities serve a mixed queue."""
    settings = CoreSettings(namespace=namespace)
    console = Console()
    with broker_url(settings) as url:
        console.print(f"Broker: {url}  namespace: {namespace}")
        board = asyncio.run(run_demo(url, namespace, jobs, step_s, console))
    totals: dict[str, int] = {}
    for row in board.rows.values():
        totals[row.status] = totals.get(row.status, 0) + 1
    console.print("\nFinal: " + ", ".join(f"{n} {status}" for status, n in sorted(totals.items())))
