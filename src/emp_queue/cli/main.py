"""The ``emp`` command: wires settings, the broker and the components; no logic of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from emp_queue import __version__
from emp_queue.cli import client_commands
from emp_queue.cli.api_commands import api, keys_app
from emp_queue.cli.components_commands import components_app
from emp_queue.cli.demo_command import demo as core_demo
from emp_queue.cli.env_commands import env_app
from emp_queue.cli.machine_commands import machine_app
from emp_queue.cli.queue_commands import broker, events, stats
from emp_queue.cli.up_command import demo, up
from emp_queue.cli.worker_commands import worker
from emp_queue.errors import EmpError
from emp_queue.telemetry.logging import configure_logging

app = typer.Typer(
    name="emp",
    help="emp-job-queue: a distributed AI workload broker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(up)
app.command()(demo)
app.command("core-demo")(core_demo)
app.command()(broker)
app.command()(stats)
app.command()(events)
app.add_typer(env_app, name="env")
app.add_typer(machine_app, name="machine")
app.add_typer(components_app, name="components")
for command in (
    client_commands.submit,
    client_commands.jobs,
    client_commands.job,
    client_commands.cancel,
    client_commands.retry,
    client_commands.explain,
    client_commands.workers,
    client_commands.machines,
    client_commands.queues,
):
    app.command()(command)
app.command()(api)
app.command()(worker)
app.add_typer(keys_app, name="keys")


@app.callback()
def main(
    log_level: Annotated[
        str, typer.Option(envvar="EMP_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "WARNING",
    log_json: Annotated[
        bool, typer.Option(envvar="EMP_LOG_JSON", help="Logs as JSON lines.")
    ] = False,
) -> None:
    """emp-job-queue: a distributed AI workload broker."""
    try:
        configure_logging(log_level, json=log_json)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log-level") from None


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def run() -> None:
    """Console entry point: project errors become one clear line and exit status 1."""
    try:
        app()
    except EmpError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None
