"""An `emp` command that cannot go on says why in one line and exits 1, never with a
traceback: its Redis/Valkey server is down, a setting is invalid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.api_process import free_port

pytestmark = pytest.mark.e2e

EMP = Path(sys.executable).parent / "emp"


def one_line_error(command: list[str], **env: str) -> str:
    """The single line ``emp <command>`` printed on stderr before exiting 1."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")} | env
    done = subprocess.run(
        [str(EMP), *command], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "create", "--role", "admin"]])
def test_a_command_with_no_broker_prints_one_line_and_exits_1(command: list[str]) -> None:
    port = free_port()  # nothing listens there
    line = one_line_error(command, EMP_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert line.startswith("error: the queue's Redis/Valkey server did not answer (")
    assert f"127.0.0.1:{port}" in line
    assert "check EMP_REDIS_URL" in line


def test_an_invalid_setting_is_named_in_one_line(tmp_path: Path) -> None:
    line = one_line_error(["api"], EMP_API_PORT="abc", EMP_DATA_DIR=str(tmp_path))
    assert line == (
        "error: invalid settings: EMP_API_PORT='abc': Input should be a valid integer, unable "
        "to parse string as an integer"
    )
