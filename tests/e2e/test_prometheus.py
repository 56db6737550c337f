"""A real Prometheus scrapes `emp up`: PromQL over the queue-depth and job-duration series
returns what a known batch of jobs did."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.api_process import free_port
from tests.e2e.test_up_command import EMP, read_until_ready, stack_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.requires_tool("prometheus")]

COMPLETED = 6
WAITING = 4


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`emp up` with one simulation worker and a service nobody serves; (API URL, key)."""
    env = {**stack_env(tmp_path), "EMP_UP_WORKERS": "simulation:1", "EMP_API_SERVICES": '["idle"]'}
    process = subprocess.Popen(
        [str(EMP), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        key = read_until_ready(process)
        yield f"http://127.0.0.1:{env['EMP_API_PORT']}", key
    finally:
        process.terminate()
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def prometheus(tmp_path: Path, stack: tuple[str, str]) -> Iterator[str]:
    api_url, key = stack
    (tmp_path / "key").write_text(key)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: emp-api\n    metrics_path: /metrics\n"
        f"    authorization:\n      type: Bearer\n      credentials_file: {tmp_path / 'key'}\n"
        f"    static_configs:\n      - targets: ['{api_url.removeprefix('http://')}']\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, promql: str) -> float | None:
    try:
        reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.TransportError:
        return None
    result = reply.json()["data"]["result"] if reply.status_code == 200 else []
    return float(result[0]["value"][1]) if result else None


def eventually(prometheus: str, promql: str, expected: float, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (value := query(prometheus, promql)) != expected:
        assert time.monotonic() < deadline, f"{promql} = {value}, expected {expected}"
        time.sleep(0.5)


def test_promql_over_depth_and_duration_after_a_known_batch(
    stack: tuple[str, str], prometheus: str
) -> None:
    api_url, key = stack
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as http:
        done = [
            http.post(
                "/api/jobs", json={"service_required": "simulation", "payload": {"steps": 2}}
            ).json()["id"]
            for _ in range(COMPLETED)
        ]
        for _ in range(WAITING):
            assert http.post("/api/jobs", json={"service_required": "idle"}).status_code == 201
        assert {wait_for(http, job_id)["status"] for job_id in done} == {"completed"}

    eventually(prometheus, 'max(emp_queue_jobs{service="idle",status="unworkable"})', WAITING)
    eventually(prometheus, 'max(emp_jobs_completed_total{service="simulation"})', COMPLETED)
    eventually(prometheus, 'max(emp_job_run_seconds_count{service="simulation"})', COMPLETED)
    # Every run took well under 10 s: the histogram's 10 s bucket holds them all.
    eventually(
        prometheus, 'max(emp_job_run_seconds_bucket{service="simulation",le="10"})', COMPLETED
    )
    assert query(prometheus, 'sum(emp_api_requests_total{route="/api/jobs",status="201"})') == (
        COMPLETED + WAITING
    )
