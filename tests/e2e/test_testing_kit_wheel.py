"""The testing kit as a user gets it: the wheel in a fresh virtualenv, a test file, no conftest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.e2e.wheel_install import ROOT, install_wheel

USER_TEST = ROOT / "tests" / "integration" / "testing_kit" / "user_test_comfyui.py"

pytestmark = pytest.mark.timeout(600)


def test_the_wheel_gives_a_user_project_the_fixtures_with_no_conftest(tmp_path: Path) -> None:
    project = tmp_path / "project"
    python = install_wheel(tmp_path, extras=("testing",)) / "python"
    project.mkdir()
    shutil.copy(USER_TEST, project / "test_comfyui_job.py")

    done = subprocess.run(
        # -o: the one setting pytest-asyncio nags every project about; -W error: nothing of ours
        # may warn in a user's run.
        [
            python,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-W",
            "error",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert not list(project.glob("conftest.py"))
