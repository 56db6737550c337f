"""The client commands (`emp submit`, `emp jobs`, ...) against a running API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from emp_queue.cli.main import app
from tests.integration.api.threaded_api import RunningApi, threaded_api


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=True) as api:
        yield api


def emp(api: RunningApi, *args: str) -> str:
    env = {"EMP_API_URL": api.url, "EMP_API_KEY": api.admin_key}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_submit_wait_prints_the_result(served: RunningApi) -> None:
    output = emp(
        served, "submit", "sim", "--payload", json.dumps({"echo": "from-cli", "steps": 2}),
        "--priority", "80", "--require", "customer_isolation=none", "--wait",
    )  # fmt: skip
    assert "completed" in output
    assert "from-cli" in output


def test_jobs_job_cancel_retry_explain(served: RunningApi) -> None:
    submitted = emp(served, "submit", "nobody-serves-this", "--id", "cli-job-1")
    assert "cli-job-1" in submitted
    assert "unworkable" in submitted
    assert "cli-job-1" in emp(served, "jobs", "--service", "nobody-serves-this")
    explained = json.loads(emp(served, "explain", "cli-job-1"))
    assert explained["serving_service"] == 0
    assert "cancelled" in emp(served, "cancel", "cli-job-1")
    assert "unworkable" in emp(served, "retry", "cli-job-1")
    assert "cli-job-1" in emp(served, "job", "cli-job-1")


def test_workers_and_queues(served: RunningApi) -> None:
    emp(served, "submit", "sim", "--payload", '{"steps": 1}', "--wait")
    workers = emp(served, "workers")
    assert "sim-worker" in workers
    assert "sim" in workers
    assert "completed 1" in emp(served, "queues")
