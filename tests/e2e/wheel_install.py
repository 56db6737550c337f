"""The project as a user installs it: the wheel, built here, in a fresh virtualenv pinned to
the versions of ``uv.lock`` (exported as constraints)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from uv import find_uv_bin

ROOT = Path(__file__).resolve().parents[2]


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


def install_wheel(tmp_path: Path, extras: tuple[str, ...] = (), also: tuple[str, ...] = ()) -> Path:
    """Build the wheel, install it with ``extras`` (and the packages ``also``) into a new venv;
    return the venv's ``bin``. Every version comes from the lock, whatever the extras."""
    dist = tmp_path / "dist"
    uv("build", "--wheel", "--out-dir", dist, ROOT, cwd=ROOT)
    (wheel,) = dist.glob("emp_job_queue-*.whl")
    constraints = tmp_path / "constraints.txt"
    uv("export", "--frozen", "--no-hashes", "--all-extras", "--no-emit-project",
       "-o", constraints, cwd=ROOT)  # fmt: skip
    venv = tmp_path / "venv"
    uv("venv", "--python", sys.executable, venv, cwd=tmp_path)
    requirement = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    uv("pip", "install", "--python", venv / "bin" / "python", "-c", constraints, requirement,
       *also, cwd=tmp_path)  # fmt: skip
    return venv / "bin"
