"""`emp webhooks` against a running API: subscribe, list, secret, log, remove."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from emp_queue.cli.main import app
from tests.integration.api.threaded_api import RunningApi, threaded_api


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=False) as api:
        yield api


def emp(api: RunningApi, *args: str, exit_code: int = 0) -> str:
    env = {"EMP_API_URL": api.url, "EMP_API_KEY": api.admin_key, "COLUMNS": "250"}
    result = CliRunner().invoke(app, ["webhooks", *args], env=env)
    assert result.exit_code == exit_code, result.output
    # A project error leaves the command as an exception; `emp` prints it as one line.
    return result.output + (str(result.exception) if result.exception else "")


def test_a_subscription_from_add_to_remove(served: RunningApi) -> None:
    added = emp(served, "add", "http://93.184.215.14/hooks", "--event", "job.failed")
    [subscription_id] = re.findall(r"sub_[0-9a-f]{16}", added)
    assert re.search(r"whsec_\S+", added)
    listed = emp(served, "list")
    assert subscription_id in listed
    assert "job.failed" in listed
    assert emp(served, "secret").strip().startswith("whsec_")
    assert "msg_" not in emp(served, "log", "--subscription", subscription_id)
    assert subscription_id in emp(served, "remove", subscription_id)
    assert subscription_id not in emp(served, "list")


def test_refusals_are_one_clear_line(served: RunningApi) -> None:
    refused = emp(served, "add", "http://127.0.0.1:9/hooks", exit_code=1)
    assert "EMP_WEBHOOKS_ALLOW_HOSTS" in refused
    assert "exactly one of --job or --subscription" in emp(served, "log", exit_code=2)
