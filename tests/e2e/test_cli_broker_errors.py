"""An `emp` command whose Redis/Valkey server is down says so in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.api_process import free_port

pytestmark = pytest.mark.e2e

EMP = Path(sys.executable).parent / "emp"


@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "create", "--role", "admin"]])
def test_a_command_with_no_broker_prints_one_line_and_exits_1(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
    port = free_port()  # nothing listens there
    env["EMP_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"

    done = subprocess.run([str(EMP), *command], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the queue's Redis/Valkey server did not answer (")
    assert f"127.0.0.1:{port}" in lines[0]
    assert "check EMP_REDIS_URL" in lines[0]
