"""The ``emp`` command: wires settings, the broker and the components; no logic of its own."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from emp_queue import __version__
from emp_queue.cli import client_commands
from emp_queue.cli.customer_commands import customers_app, usage
from emp_queue.cli.lazy import LazyGroup
from emp_queue.cli.queue_commands import queues_app
from emp_queue.cli.schedule_commands import schedules_app
from emp_queue.errors import EmpError
from emp_queue.telemetry.logging import configure_logging

app = typer.Typer(
    name="emp",
    help="emp-job-queue: a distributed AI workload broker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,  # up, demo, api, worker, machine, env, keys...: imported when they run
)
for command in (
    client_commands.submit,
    client_commands.upload,
    client_commands.jobs,
    client_commands.job,
    client_commands.cancel,
    client_commands.retry,
    client_commands.explain,
    client_commands.workers,
    client_commands.machines,
):
    app.command()(command)
app.add_typer(queues_app, name="queues")
app.add_typer(schedules_app, name="schedules")
app.add_typer(customers_app, name="customers")
app.command()(usage)


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
    """Console entry point: project errors and broker errors become one clear line and exit
    status 1."""
    try:
        app()
    except EmpError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None
    except Exception as error:
        message = broker_failure(error) or settings_failure(error)
        if message is None:
            raise
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None


def settings_failure(error: Exception) -> str | None:
    """The line for a settings class that refused its environment (pydantic's error), in the
    variables' names; None for any other error."""
    pydantic_core = sys.modules.get("pydantic_core")
    if pydantic_core is None or not isinstance(error, pydantic_core.ValidationError):
        return None
    from emp_queue.settings_env import describe_invalid_settings

    return describe_invalid_settings(error)


def broker_failure(error: Exception) -> str | None:
    """The line for an error of the queue's Redis/Valkey server (redis-py's), None for any
    other. Such an error means redis-py is loaded; a client-only install, which has no
    redis-py, never gets here with one."""
    redis_exceptions = sys.modules.get("redis.exceptions")
    if redis_exceptions is None:
        return None
    if isinstance(error, ExceptionGroup):  # a task group's (the worker's first registration)
        broker_errors, others = error.split(redis_exceptions.RedisError)
        if broker_errors is None or others is not None:
            return None
        return broker_failure(broker_errors.exceptions[0])
    if not isinstance(error, redis_exceptions.RedisError):
        return None
    from emp_queue.core.refusals import describe

    return describe(error)
