"""`emp api` as a user starts it: first start prints an admin key that works."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

EMP = Path(sys.executable).parent / "emp"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def api_process(redis_url: str, namespace: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = {
        **os.environ,
        "EMP_REDIS_URL": redis_url,
        "EMP_NAMESPACE": namespace,
        "EMP_API_PORT": str(port),
        "EMP_API_HOST": "127.0.0.1",
        "EMP_API_SERVICES": '["sim"]',
    }
    process = subprocess.Popen(
        [str(EMP), "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("emp api did not become ready")


def test_first_start_prints_a_working_admin_key(
    api_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = api_process
    assert process.stdout is not None
    header = process.stdout.readline()
    secret = process.stdout.readline().strip()
    wait_ready(url, process)

    authorised = httpx.get(f"{url}/api/queues", headers={"Authorization": f"Bearer {secret}"})
    anonymous = httpx.get(f"{url}/api/queues")

    assert "admin key" in header
    assert secret.startswith("emp_")
    assert authorised.status_code == 200
    assert anonymous.status_code == 401
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    rest = process.stdout.read()
    assert "Traceback" not in rest, rest


def test_sigterm_ends_the_server_while_event_streams_are_open(
    api_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = api_process
    assert process.stdout is not None
    process.stdout.readline()
    secret = process.stdout.readline().strip()
    wait_ready(url, process)
    headers = {"Authorization": f"Bearer {secret}"}
    job = httpx.post(f"{url}/api/jobs", json={"service_required": "sim"}, headers=headers)
    assert job.status_code == 201, job.text
    with (
        httpx.Client(headers=headers, timeout=30) as client,
        client.stream("GET", f"{url}/api/jobs/{job.json()['id']}/events") as stream,
    ):
        assert stream.status_code == 200
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert time.monotonic() - started < 10, "the open stream held the shutdown up"
