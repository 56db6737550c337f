"""The ``emp`` group imports a command's module only when the command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from emp_queue.cli.lazy import LAZY_COMMANDS, load_command
from emp_queue.cli.main import app


def test_a_client_command_does_not_import_the_server_side() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from emp_queue.cli.main import app\n"
        "result = CliRunner().invoke(app, ['jobs', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('fastapi', 'emp_queue.machine.agent', 'emp_queue.env.builder',\n"
        "                     'emp_queue.worker.process') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_lazy_command_loads_under_its_name(name: str) -> None:
    assert load_command(name).name == name
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"emp {name}" in result.output


def test_help_lists_lazy_and_eager_commands_alike() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("submit", "jobs", "api", "worker", "machine", "keys", "up"):
        assert name in result.output
