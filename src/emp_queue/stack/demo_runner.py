"""Submit the demo batch through the API and show a live progress bar per job."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from emp_queue.client.async_client import AsyncClient
from emp_queue.models import Job, JobStatus
from emp_queue.stack.demo_jobs import demo_batch

POLL_S = 0.2


@dataclass(frozen=True)
class DemoOutcome:
    jobs: list[Job]
    elapsed_s: float

    @property
    def completed(self) -> int:
        return sum(job.status == JobStatus.COMPLETED for job in self.jobs)


async def run_demo(
    client: AsyncClient, services: set[str], console: Console, timeout_s: float = 300
) -> DemoOutcome:
    """Submit the mixed batch, follow every job to its end; raise TimeoutError past the limit."""
    labelled = demo_batch(services)
    handles = await client.submit_batch([spec for _, spec in labelled])
    loop = asyncio.get_running_loop()
    started = loop.time()
    columns = (
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars: dict[str, TaskID] = {
            handle.id: progress.add_task(label, total=100, status="pending")
            for (label, _), handle in zip(labelled, handles, strict=True)
        }
        async with asyncio.timeout(timeout_s):
            jobs = await _follow(client, progress, bars)
    return DemoOutcome(jobs, loop.time() - started)


async def _follow(client: AsyncClient, progress: Progress, bars: dict[str, TaskID]) -> list[Job]:
    finished: dict[str, Job] = {}
    while len(finished) < len(bars):
        waiting = [job_id for job_id in bars if job_id not in finished]
        for job in await asyncio.gather(*(client.get(job_id) for job_id in waiting)):
            done = job.status.is_terminal
            percent = 100.0 if job.status == JobStatus.COMPLETED else (job.progress or 0.0)
            progress.update(bars[job.id], completed=percent, status=job.status.value)
            if done:
                finished[job.id] = job
        await asyncio.sleep(POLL_S)
    return [finished[job_id] for job_id in bars]
