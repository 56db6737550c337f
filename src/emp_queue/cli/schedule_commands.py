"""``emp schedules``: recurring jobs (a cron expression and a job), through the API."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emp_queue.cli.client_commands import _client
from emp_queue.cli.options import json_option, requirements_option
from emp_queue.models import JobSpec

schedules_app = typer.Typer(
    help="Recurring jobs: every tick of a cron expression submits one job.",
    invoke_without_command=True,
)


def _when(value_ms: int | None) -> str:
    if value_ms is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value_ms / 1000)) + " UTC"


@schedules_app.callback()
def schedules(ctx: typer.Context) -> None:
    """The schedules: cron, service, next tick, last tick and its job (or why it was refused)."""
    if ctx.invoked_subcommand is not None:
        return
    with _client() as client:
        found = client.schedules()
    table = Table("id", "cron", "zone", "service", "next tick", "last job")
    for schedule in found:
        last = schedule.get("last_job_id") or ""
        if schedule.get("last_error"):
            last = f"{last} refused: {schedule['last_error']}"
        table.add_row(
            schedule["id"], schedule["cron"], schedule["timezone"],
            schedule["job"]["service_required"], _when(schedule.get("next_tick_ms")), last,
        )  # fmt: skip
    Console().print(table if found else "No schedules.")


@schedules_app.command("add")
def add(
    cron: Annotated[str, typer.Argument(help='Five fields, e.g. "*/15 * * * *".')],
    service: Annotated[str, typer.Argument(help="The service each job runs on.")],
    payload: Annotated[str, typer.Option(help="JSON object, or @file.json.")] = "{}",
    priority: Annotated[int, typer.Option(min=0, max=100)] = 50,
    require: Annotated[
        list[str] | None, typer.Option(help="Requirement KEY=VALUE, repeatable.")
    ] = None,
    schedule_id: Annotated[str | None, typer.Option("--id", help="The schedule's id.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA zone the cron reads in.")] = "UTC",
) -> None:
    """Create a schedule."""
    job = JobSpec(
        service_required=service,
        priority=priority,
        payload=json_option(payload, "--payload"),
        requirements=requirements_option(require or []),
    )
    with _client() as client:
        created = client.create_schedule(cron, job, schedule_id=schedule_id, timezone=timezone)
    Console().print(
        f"schedule [bold]{created['id']}[/]: next tick {_when(created['next_tick_ms'])}"
    )


@schedules_app.command("rm")
def remove(schedule_id: Annotated[str, typer.Argument()]) -> None:
    """Delete a schedule (jobs it submitted stay)."""
    with _client() as client:
        deleted = client.delete_schedule(schedule_id)
    Console().print(f"schedule {schedule_id}: {'deleted' if deleted else 'not found'}")
