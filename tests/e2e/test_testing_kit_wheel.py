"""The testing kit as a user gets it: the wheel in a fresh virtualenv, a test file, no conftest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parents[2]
USER_TEST = ROOT / "tests" / "integration" / "testing_kit" / "user_test_comfyui.py"

pytestmark = pytest.mark.timeout(600)


def uv(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [find_uv_bin(), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=480,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"},
    )
    assert done.returncode == 0, f"uv {' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_gives_a_user_project_the_fixtures_with_no_conftest(tmp_path: Path) -> None:
    dist, project = tmp_path / "dist", tmp_path / "project"
    uv("build", "--wheel", "--out-dir", dist, ROOT, cwd=ROOT)
    (wheel,) = dist.glob("emp_job_queue-*.whl")
    # The same versions the project tests with: the lock, exported as constraints.
    constraints = tmp_path / "constraints.txt"
    uv("export", "--frozen", "--no-hashes", "--extra", "testing", "--no-emit-project",
       "-o", constraints, cwd=ROOT)  # fmt: skip
    venv = tmp_path / "venv"
    uv("venv", "--python", sys.executable, venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    uv("pip", "install", "--python", python, "-c", constraints, f"{wheel}[testing]", cwd=tmp_path)
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
