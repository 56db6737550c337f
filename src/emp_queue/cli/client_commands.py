"""The client commands: ``emp submit``, ``emp jobs``, ``emp job``, ``emp cancel``, ... .

They talk to the API (``EMP_API_URL``, ``EMP_API_KEY``) through the SDK, never to Redis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from emp_queue.cli.options import json_option, requirements_option, time_option
from emp_queue.client import Client
from emp_queue.client.settings import ClientSettings
from emp_queue.models import Job, JobSpec


def _client() -> Client:
    settings = ClientSettings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return Client(settings.api_url, key)


def _job_table(jobs: list[Job], title: str | None = None) -> Table:
    table = Table(title=title)
    table.add_column("id", no_wrap=True, min_width=36)  # ids are copied into other commands
    for column in ("service", "status", "pri", "worker", "%"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        progress = "" if job.progress is None else f"{job.progress:.0f}%"
        table.add_row(
            job.id, job.service_required, job.status.value, str(job.priority),
            job.worker_id or "", progress,
        )  # fmt: skip
    return table


def _print_job(console: Console, job: Job) -> None:
    console.print(_job_table([job]))
    if job.error is not None:
        console.print(f"[red]{job.error.failure_class}[/]: {job.error.message}")
    if job.result is not None:
        console.print_json(json.dumps(job.result))


def _follow(console: Console, client: Client, job: Job) -> Job:
    """A live progress bar fed by the job's events; returns the finished job."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
    ) as progress:  # fmt: skip
        bar = progress.add_task(job.id, total=100, status=job.status.value)
        for event in client.events(job.id):
            update: dict[str, Any] = {}
            if "status" in event.data:
                update["status"] = event.data["status"]
            if event.type == "update_job_progress" and "progress" in event.data:
                update["completed"] = event.data["progress"]
            if event.type == "complete_job":
                update.update(completed=100, status="completed")
            progress.update(bar, **update)
    return client.get(job.id)


def submit(
    service: Annotated[str, typer.Argument(help="The service that runs the job, e.g. comfyui.")],
    payload: Annotated[str, typer.Option(help="JSON object, or @file.json.")] = "{}",
    priority: Annotated[int, typer.Option(min=0, max=100)] = 50,
    require: Annotated[
        list[str] | None,
        typer.Option(
            help="Requirement KEY=VALUE, repeatable: models=sdxl, hardware.gpu_memory_gb=24."
        ),
    ] = None,
    job_id: Annotated[
        str | None, typer.Option("--id", help="Your own job id (idempotent).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress and print the result.")] = False,
    delay: Annotated[
        float | None, typer.Option(help="Not claimable before this many seconds from now.")
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(help="Not claimable before then: ISO 8601 (UTC if no zone) or epoch ms."),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option(help="Run only once this job completed (repeatable: depends_on)."),
    ] = None,
) -> None:
    """Submit a job through the API."""
    spec = JobSpec(
        id=job_id,
        service_required=service,
        priority=priority,
        payload=json_option(payload, "--payload"),
        requirements=requirements_option(require or []),
        delay_s=delay,
        run_at=None if run_at is None else time_option(run_at, "--run-at"),
        depends_on=after or None,
    )
    console = Console()
    with _client() as client:
        job = client.submit(spec)
        console.print(f"submitted [bold]{job.id}[/] ({job.status.value})")
        if wait:
            _print_job(console, _follow(console, client, job))


def upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The file to send.")],
    content_type: Annotated[
        str | None, typer.Option(help="Its media type; default: the one its name implies.")
    ] = None,
    customer: Annotated[
        str | None, typer.Option(help="Admin keys: the customer the file is for.")
    ] = None,
) -> None:
    """Upload a job's input file; prints the ref to put in a payload."""
    with _client() as client:
        answer = client.upload(path, content_type=content_type, customer=customer)
    Console().print_json(json.dumps(answer))


def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    service: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
) -> None:
    """List jobs, newest first."""
    filters = {k: v for k, v in {"status": status, "service": service}.items() if v}
    with _client() as client:
        page = client.list_jobs(cursor=cursor, limit=limit, **filters)
    console = Console()
    console.print(_job_table(page.jobs))
    if page.next_cursor:
        console.print(f"more: emp jobs --cursor {page.next_cursor}")


def job(
    job_id: Annotated[str, typer.Argument()],
    watch: Annotated[bool, typer.Option(help="Follow it until it finishes.")] = False,
) -> None:
    """Show one job (and follow it with --watch)."""
    console = Console()
    with _client() as client:
        found = client.get(job_id)
        following = watch and not found.status.is_terminal
        _print_job(console, _follow(console, client, found) if following else found)


def cancel(job_id: Annotated[str, typer.Argument()]) -> None:
    """Cancel a waiting or running job."""
    with _client() as client:
        Console().print(f"{job_id}: {client.cancel(job_id).status.value}")


def retry(job_id: Annotated[str, typer.Argument()]) -> None:
    """Requeue a failed, cancelled, timed-out or expired job."""
    with _client() as client:
        Console().print(f"{job_id}: {client.retry(job_id).status.value}")


def explain(job_id: Annotated[str, typer.Argument()]) -> None:
    """Why is this job waiting?"""
    with _client() as client:
        Console().print_json(json.dumps(client.explain(job_id)))


def workers() -> None:
    """Live workers: services, health (idle, busy, service_down), models, node classes, jobs."""
    with _client() as client:
        found = client.workers()
    table = Table("worker", "machine", "status", "services", "models", "nodes", "running")
    for worker in found:
        capabilities = worker["capabilities"]
        nodes = capabilities.get("nodes")
        table.add_row(
            worker["worker_id"],
            worker["machine_id"] or "",
            worker["status"],
            ", ".join(capabilities["services"]),
            _models_cell(capabilities.get("models") or {}),
            str(nodes["count"]) if nodes else "",
            ", ".join(worker["running"]),
        )
    Console().print(table if found else "No live workers.")


def _models_cell(models: dict[str, dict[str, list[str]]], shown: int = 3) -> str:
    """The installed models (loaded ones marked *), the first few and how many more."""
    names: list[str] = []
    for service_models in models.values():
        loaded = set(service_models.get("loaded") or [])
        for name in service_models.get("installed") or []:
            label = f"{name}*" if name in loaded else name
            if label not in names:
                names.append(label)
    more = f" +{len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def machines(
    remove: Annotated[
        str | None,
        typer.Option(help="Forget this machine (an offline one); its jobs are requeued."),
    ] = None,
) -> None:
    """Machines: phase, GPUs, services and workers; or remove one with --remove."""
    with _client() as client:
        if remove is not None:
            requeued = client.remove_machine(remove)
            Console().print(f"Removed machine {remove}; {requeued} job(s) requeued.")
            return
        found = client.machines()
    table = Table("machine", "phase", "online", "gpus", "services", "workers")
    for machine in found:
        gpus = ", ".join(
            f"{g['name']} {g['memory_gb']:.0f} GB" for g in machine["hardware"]["gpus"]
        )
        services = ", ".join(f"{s['name']} {s['status']}" for s in machine["services"])
        table.add_row(
            machine["machine_id"],
            machine["phase"],
            "yes" if machine["online"] else "no",
            gpus or "none",
            services,
            str(len(machine["workers"])),
        )
    Console().print(table if found else "No machines.")
