"""`emp api` as a user starts it: first start prints an admin key that works."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from tests.e2e.api_process import running_api, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_process(redis_url: str, namespace: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with running_api(redis_url, namespace) as started:
        yield started


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
