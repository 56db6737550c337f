"""``emp queues``: depths per service, and queue control (pause, drain, resume a service;
pause, resume a pool) through the API (an admin ``EMP_API_KEY`` to change them)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emp_queue.cli.client_commands import _client

queues_app = typer.Typer(
    help="Jobs per service and status; pause, drain or resume a service, pause a pool.",
    invoke_without_command=True,
)

Reason = Annotated[str | None, typer.Option(help="Why; shown by explain and the monitor.")]


def _since(control: dict[str, Any]) -> str:
    since_ms = control.get("since_ms")
    if since_ms is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since_ms / 1000)) + " UTC"


@queues_app.callback()
def queues(ctx: typer.Context) -> None:
    """Jobs per service and status, how long the front of each service waits, and the
    services and pools an operator paused or drained."""
    if ctx.invoked_subcommand is not None:
        return
    with _client() as client:
        found = client.queues()
        controls = client.queue_controls()
    table = Table("service", "state", "counts", "oldest wait")
    for queue in found:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(queue["counts"].items()))
        wait_ms = queue["oldest_wait_ms"]
        table.add_row(
            queue["service"],
            queue.get("state", "open"),
            counts,
            "" if wait_ms is None else f"{wait_ms / 1000:.1f} s",
        )
    console = Console()
    console.print(table if found else "No jobs.")
    for control in controls:
        by = f" by {control['by']}" if control.get("by") else ""
        why = f": {control['reason']}" if control.get("reason") else ""
        console.print(
            f"{control['target']} {control['name']} {control['state']}{by} since "
            f"{_since(control)}{why}"
        )


def _control(target: str, name: str, action: str, reason: str | None) -> None:
    with _client() as client:
        found = client.control_queue(target, name, action, reason)
    Console().print(f"{found['target']} {found['name']}: {found['state']}")


@queues_app.command("pause")
def pause(service: Annotated[str, typer.Argument()], reason: Reason = None) -> None:
    """Stop claims of a service's jobs (they are accepted and wait; running jobs finish)."""
    _control("service", service, "pause", reason)


@queues_app.command("drain")
def drain(service: Annotated[str, typer.Argument()], reason: Reason = None) -> None:
    """Refuse new jobs of a service while its waiting jobs run."""
    _control("service", service, "drain", reason)


@queues_app.command("resume")
def resume(service: Annotated[str, typer.Argument()]) -> None:
    """Back to normal after pause or drain."""
    _control("service", service, "resume", None)


@queues_app.command("pause-pool")
def pause_pool(pool: Annotated[str, typer.Argument()], reason: Reason = None) -> None:
    """Stop claims by a pool's workers (their running jobs finish)."""
    _control("pool", pool, "pause", reason)


@queues_app.command("resume-pool")
def resume_pool(pool: Annotated[str, typer.Argument()]) -> None:
    _control("pool", pool, "resume", None)
