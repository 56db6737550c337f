"""Commands imported when they run: ``emp jobs`` should not load FastAPI, the machine agent
and the environment builder first.

Importing every command module made any ``emp`` call take about a second on the benchmark
machine; the client commands alone need a third of that. The top-level group lists the lazy
commands by name and imports a command's module only when it is invoked (or when ``--help``
lists them all with their summaries).

Every lazy command is server-side: on a client-only install (``emp-job-queue`` without the
``[server]`` extra) each one is a stand-in that says what to install.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from emp_queue.server_parts import INSTALL_HINT, missing_server_modules, require_server_parts

# Typer's click types are not public (recent Typer vendors its own click): Any at this seam.
ClickCommand = Any
ClickContext = Any

# Command name → (module, attribute): a function (one command) or a Typer app (a group).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("emp_queue.cli.up_command", "up"),
    "demo": ("emp_queue.cli.up_command", "demo"),
    "core-demo": ("emp_queue.cli.demo_command", "demo"),
    "broker": ("emp_queue.cli.broker_commands", "broker"),
    "stats": ("emp_queue.cli.broker_commands", "stats"),
    "shards": ("emp_queue.cli.broker_commands", "shards"),
    "events": ("emp_queue.cli.broker_commands", "events"),
    "env": ("emp_queue.cli.env_commands", "env_app"),
    "machine": ("emp_queue.cli.machine_commands", "machine_app"),
    "components": ("emp_queue.cli.components_commands", "components_app"),
    "api": ("emp_queue.cli.api_commands", "api"),
    "keys": ("emp_queue.cli.api_commands", "keys_app"),
    "worker": ("emp_queue.cli.worker_commands", "worker"),
    "webhooks": ("emp_queue.cli.webhook_commands", "webhooks_app"),
}


def load_command(name: str) -> ClickCommand:
    if missing_server_modules():
        return server_only_command(name)
    module_name, attribute = LAZY_COMMANDS[name]
    target: Any = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):
        command = typer.main.get_command(target)
    else:
        single = typer.Typer()
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


def server_only_command(name: str) -> ClickCommand:
    """A stand-in for a server command on a client-only install: it fails with the fix."""
    single = typer.Typer()

    @single.command(
        name,
        help=f"Needs the server parts: {INSTALL_HINT}.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def unavailable() -> None:
        require_server_parts(f"'emp {name}'")

    command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The ``emp`` group: its own commands, plus those of :data:`LAZY_COMMANDS` on demand."""

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name)
        return super().get_command(ctx, cmd_name)
