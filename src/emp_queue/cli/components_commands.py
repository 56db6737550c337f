"""``emp components install``: install a manifest's custom nodes and models on this machine."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emp_queue.machine.components import ComponentManager, ComponentSettings, InstallReport

components_app = typer.Typer(
    name="components",
    help="Custom nodes and models from a manifest (EMP_COMPONENTS_*).",
    no_args_is_help=True,
)

STATUS_STYLE = {"installed": "green", "already_present": "dim", "failed": "red"}


@components_app.callback()
def components() -> None:
    """Custom nodes and models from a manifest (EMP_COMPONENTS_*)."""


@components_app.command("install")
def install_command(
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest",
            help="Manifest file (.json/.toml) or http(s) URL [default: EMP_COMPONENTS_MANIFEST].",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Install custom nodes (git) and models (HTTP); exit 1 if any component failed."""
    settings = ComponentSettings()
    if manifest is not None:
        settings = settings.model_copy(update={"manifest": manifest})
    if settings.manifest is None:
        raise typer.BadParameter(
            "no manifest: pass --manifest or set EMP_COMPONENTS_MANIFEST", param_hint="--manifest"
        )
    console = Console(highlight=False)
    report = asyncio.run(ComponentManager(settings, console=console).install())
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(_table(report))
    if not report.ok:
        raise typer.Exit(code=1)


def _table(report: InstallReport) -> Table:
    table = Table("kind", "name", "status", "detail", "seconds")
    for outcome in report.outcomes:
        style = STATUS_STYLE[outcome.status]
        table.add_row(
            outcome.kind,
            outcome.name,
            Text(outcome.status, style=style),
            Text(outcome.detail),
            f"{outcome.duration_s:.1f}",
        )
    return table
