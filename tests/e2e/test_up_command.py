"""`emp up` as a newcomer runs it: the stack comes up, jobs complete, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from tests.e2e.api_process import free_port
from tests.e2e.ports import free_stack_offset

from emp_queue.media import png_size

pytestmark = pytest.mark.e2e

EMP = Path(sys.executable).parent / "emp"
KEY = re.compile(r"emp_[A-Za-z0-9_-]{20,}")


def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
    return {
        **env,
        "EMP_DATA_DIR": str(tmp_path / "data"),  # its own embedded Valkey
        "EMP_STORAGE_LOCAL_DIR": str(tmp_path / "assets"),
        "EMP_API_PORT": str(free_port()),
        "EMP_UP_PORT_OFFSET": str(free_stack_offset()),
        "EMP_UP_WORKERS": "simulation:1,comfyui:1",
        "EMP_UP_MOCK_GPUS": "1",
        "COLUMNS": "200",
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = stack_env(tmp_path)
    process = subprocess.Popen(
        [str(EMP), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    yield process, env
    if process.poll() is None:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def read_until_ready(process: subprocess.Popen[str]) -> str:
    """The admin key from the banner (the banner is printed once the machine is ready)."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line or process.poll() is None, "".join(seen)
        seen.append(line)
        if (found := KEY.search(line)) is not None:
            return found.group(0)
    raise AssertionError("emp up never printed its admin key:\n" + "".join(seen))


def wait_for(http: httpx.Client, job_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, object] = http.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled", "timeout"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_jobs_complete_on_the_local_stack_and_ctrl_c_stops_everything(
    stack: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    process, env = stack
    key = read_until_ready(process)
    url = f"http://127.0.0.1:{env['EMP_API_PORT']}"
    children = psutil.Process(process.pid).children(recursive=True)

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        render = http.post(
            "/api/jobs",
            json={"service_required": "simulation",
                  "payload": {"steps": 3, "image": {"width": 8, "height": 8}}},
        ).json()  # fmt: skip
        done = wait_for(http, str(render["id"]))
        [output] = done["result"]["outputs"]  # type: ignore[index]
        image = http.get(output["url"].removeprefix(url))
        machines = http.get("/api/machines").json()["machines"]

    process.send_signal(signal.SIGINT)
    exit_code = process.wait(timeout=60)

    assert done["status"] == "completed"
    assert png_size(image.content) == (8, 8)
    assert [m["machine_id"] for m in machines] == ["local"]
    assert {s["name"] for s in machines[0]["services"]} >= {"comfyui-0"}
    assert len(children) >= 4, "valkey, the ComfyUI fake and two workers at least"
    assert exit_code == 0
    assert [c.pid for c in children if c.is_running() and c.status() != "zombie"] == []


def test_the_demo_completes_and_exits(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    result = subprocess.run(
        [str(EMP), "up", "--demo", "--exit"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Demo: (\d+)/\1 jobs completed", result.stdout), result.stdout
    assert "Traceback" not in result.stderr


def test_an_api_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env["EMP_API_PORT"] = str(port)
        done = subprocess.run(
            [str(EMP), "up"], env=env, capture_output=True, text=True, timeout=120
        )

    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (EMP_API_PORT): Address already in use; "
        "stop what uses the port or choose another (0: any free port)"
    )
