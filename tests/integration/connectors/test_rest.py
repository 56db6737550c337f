"""rest-sync and rest-async against the fake REST service: contract, classes, polling, hosts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from emp_queue.connectors.rest import RestConfig, RestSyncConnector
from emp_queue.connectors.rest_async import RestAsyncConnector
from emp_queue.connectors.rest_hosts import HostAllowlist
from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import (
    ConnectorContract,
    RecordingJob,
    closed_port,
    make_job,
)
from emp_queue.testing.fakes.rest import FakeRest

POLL = {
    "url": "/jobs/{id}",
    "done_values": ["succeeded"],
    "failed_values": ["failed", "cancelled"],
    "progress_field": "progress",
    "progress_max": 100,
    "result_field": "output",
    "interval_s": 0.05,
}


def async_job(steps: int, step_delay_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "path": "/jobs",
        "json": {"steps": steps, "step_delay_s": step_delay_s, **extra},
        "poll": POLL,
        "cancel": {"url": "/jobs/{id}/cancel"},
    }


class TestRestSyncContract(ConnectorContract):
    @pytest_asyncio.fixture
    async def connector(self, fake_rest: FakeRest) -> AsyncIterator[RestSyncConnector]:
        connector = RestSyncConnector(RestConfig(base_url=fake_rest.url, models=["echo"]))
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return {"path": "/echo", "json": {"hello": "world"}}

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {"method": "GET", "path": "/status/422"}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return {"method": "GET", "path": "/slow", "query": {"delay_s": 30}}

    @pytest.fixture
    def unreachable(self) -> RestSyncConnector:
        return RestSyncConnector(RestConfig(base_url=f"http://127.0.0.1:{closed_port()}"))


class TestRestAsyncContract(ConnectorContract):
    @pytest_asyncio.fixture
    async def connector(self, fake_rest: FakeRest) -> AsyncIterator[RestAsyncConnector]:
        connector = RestAsyncConnector(RestConfig(base_url=fake_rest.url, models=["jobs"]))
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return async_job(3, 0.02)

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {**async_job(1, 0), "json": {"steps": "many"}}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return async_job(1000, 0.05)

    @pytest.fixture
    def unreachable(self) -> RestAsyncConnector:
        return RestAsyncConnector(RestConfig(base_url=f"http://127.0.0.1:{closed_port()}"))


@pytest_asyncio.fixture
async def sync(fake_rest: FakeRest) -> AsyncIterator[RestSyncConnector]:
    connector = RestSyncConnector(
        RestConfig(
            base_url=fake_rest.url,
            default_headers={"X-Team": "render"},
            auth_token=SecretStr("s3cret"),
            max_inline_bytes=4096,
        )
    )
    await connector.start()
    yield connector
    await connector.close()


@pytest_asyncio.fixture
async def poller(fake_rest: FakeRest) -> AsyncIterator[RestAsyncConnector]:
    connector = RestAsyncConnector(RestConfig(base_url=fake_rest.url))
    await connector.start()
    yield connector
    await connector.close()


@dataclass
class MovingJob(RecordingJob):
    """Sets ``moving`` at the first progress above zero: the remote work is under way."""

    moving: asyncio.Event = field(default_factory=asyncio.Event)

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        await super().progress(fraction, message)
        if fraction:
            self.moving.set()


def running(service: str, payload: dict[str, Any], storage: AssetStorage) -> MovingJob:
    return MovingJob(make_job(service, payload), storage)


async def test_json_answer_is_inline_with_headers_sent(
    sync: RestSyncConnector, storage: AssetStorage
) -> None:
    payload = {"method": "put", "path": "/echo", "json": {"a": 1}, "headers": {"X-Job": "7"}}

    result = await sync.run(running("rest-sync", payload, storage))

    echoed = result["json"]
    assert result["status_code"] == 200
    assert echoed["method"] == "PUT"
    assert echoed["json"] == {"a": 1}
    assert echoed["headers"]["x-team"] == "render"
    assert echoed["headers"]["x-job"] == "7"
    assert echoed["headers"]["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    ("status", "failure_class"),
    [
        (400, FailureClass.JOB_FAULT),
        (404, FailureClass.JOB_FAULT),
        (422, FailureClass.JOB_FAULT),
        (429, FailureClass.SERVICE_FAULT),
        (500, FailureClass.SERVICE_FAULT),
        (503, FailureClass.SERVICE_FAULT),
    ],
)
async def test_status_codes_map_to_failure_classes(
    sync: RestSyncConnector, storage: AssetStorage, status: int, failure_class: FailureClass
) -> None:
    with pytest.raises(JobFailedError, match=f"answers {status} as asked") as failure:
        await sync.run(
            running("rest-sync", {"method": "GET", "path": f"/status/{status}"}, storage)
        )

    assert failure.value.failure_class == failure_class
    assert failure.value.details["status"] == status
    if status in (429, 503):
        assert failure.value.details["retry_after_s"] == 7.0


async def test_binary_and_large_bodies_are_stored_small_text_is_inline(
    sync: RestSyncConnector, storage: AssetStorage, tmp_path: Path
) -> None:
    binary = await sync.run(running("rest-sync", {"method": "GET", "path": "/bytes/300"}, storage))
    large = await sync.run(
        running("rest-sync", {"method": "GET", "path": "/large-json/500"}, storage)
    )
    text = await sync.run(running("rest-sync", {"method": "GET", "path": "/text/20"}, storage))

    stored = tmp_path / "assets" / binary["output"]["bucket"] / binary["output"]["key"]
    assert stored.read_bytes() == bytes(i % 251 for i in range(300))
    assert binary["output"]["content_type"] == "application/octet-stream"
    assert large["output"]["content_type"] == "application/json"
    assert large["output"]["size"] > 4096
    assert "json" not in large
    assert text["text"] == "lorem ipsum lorem ip"


async def test_expecting_json_from_a_text_answer_is_a_job_fault(
    sync: RestSyncConnector, storage: AssetStorage
) -> None:
    payload = {"method": "GET", "path": "/text/10", "expect": "json"}

    with pytest.raises(JobFailedError, match="not JSON") as failure:
        await sync.run(running("rest-sync", payload, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT


async def test_a_host_outside_the_allowlist_is_refused_before_any_request(
    fake_rest: FakeRest, sync: RestSyncConnector, storage: AssetStorage
) -> None:
    # A name that never resolves: should the guard regress, nothing real is contacted.
    payload = {"method": "GET", "url": "http://metadata.invalid/latest/meta-data/"}

    with pytest.raises(JobFailedError, match=r"metadata\.invalid") as failure:
        await sync.run(running("rest-sync", payload, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert fake_rest.requests == []


async def test_a_redirect_to_another_host_is_refused(
    fake_rest: FakeRest, sync: RestSyncConnector, storage: AssetStorage
) -> None:
    elsewhere = fake_rest.url.replace("127.0.0.1", "localhost") + "/echo"
    payload = {"method": "GET", "path": "/redirect", "query": {"to": elsewhere}}

    with pytest.raises(JobFailedError, match="localhost") as failure:
        await sync.run(running("rest-sync", payload, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert [r.path for r in fake_rest.requests] == ["/redirect"]


async def test_the_token_goes_only_to_the_base_url_host(
    fake_rest: FakeRest, storage: AssetStorage
) -> None:
    other = fake_rest.url.replace("127.0.0.1", "localhost")
    connector = RestSyncConnector(
        RestConfig(
            base_url=fake_rest.url, allowed_hosts=["localhost"], auth_token=SecretStr("s3cret")
        )
    )
    await connector.start()
    try:
        result = await connector.run(running("rest-sync", {"url": f"{other}/echo"}, storage))
        own = {"url": f"{other}/echo", "headers": {"Authorization": "Bearer the-jobs-own"}}
        with_own = await connector.run(running("rest-sync", own, storage))
        at_base = await connector.run(running("rest-sync", {"path": "/echo"}, storage))
    finally:
        await connector.close()

    assert "authorization" not in result["json"]["headers"]
    assert with_own["json"]["headers"]["authorization"] == "Bearer the-jobs-own"
    assert at_base["json"]["headers"]["authorization"] == "Bearer s3cret"


async def test_a_job_cannot_set_the_host_header(
    sync: RestSyncConnector, storage: AssetStorage
) -> None:
    payload = {"path": "/echo", "headers": {"Host": "metadata.internal"}}

    with pytest.raises(JobFailedError, match="host") as failure:
        await sync.run(running("rest-sync", payload, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT


async def test_no_base_url_and_no_allowlist_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="EMP_REST_ALLOWED_HOSTS"):
        await RestSyncConnector(RestConfig()).start()


@pytest.mark.parametrize(
    ("rules", "url", "allowed"),
    [
        (["api.example.com"], "https://api.example.com/x", True),
        (["api.example.com"], "https://api.example.com.evil.net/x", False),
        (["api.example.com:8443"], "https://api.example.com/x", False),
        (["api.example.com:8443"], "https://api.example.com:8443/x", True),
        (["*.example.com"], "http://a.b.example.com/", True),
        (["*.example.com"], "http://example.com/", False),
        (["[::1]:8080"], "http://[::1]:8080/", True),
        (["*"], "http://anything.at.all/", True),
        (["*"], "file:///etc/passwd", False),
    ],
)
def test_allowlist_rules(rules: list[str], url: str, allowed: bool) -> None:
    hosts = HostAllowlist(rules, base_url=None)
    if allowed:
        hosts.check(httpx.URL(url))
    else:
        with pytest.raises(JobFailedError):
            hosts.check(httpx.URL(url))


async def test_async_job_is_polled_to_done_with_rising_progress(
    fake_rest: FakeRest, poller: RestAsyncConnector, storage: AssetStorage
) -> None:
    payload = async_job(8, 0.05, result={"caption": "a fox"})

    result = await poller.run(job := running("rest-async", payload, storage))

    fractions = [f for f, _ in job.reports if f is not None]
    assert result["json"] == {"caption": "a fox"}
    assert result["status"] == "succeeded"
    assert result["id"] in fake_rest.jobs
    assert len([f for f in fractions if 0 < f < 1]) >= 2, fractions
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


async def test_async_poll_url_can_come_from_the_submit_answer(
    poller: RestAsyncConnector, storage: AssetStorage
) -> None:
    poll = {"url_field": "poll_url", "done_values": ["succeeded"], "interval_s": 0.05}
    payload = {"path": "/jobs", "json": {"steps": 2, "step_delay_s": 0.02}, "poll": poll}

    result = await poller.run(running("rest-async", payload, storage))

    assert result["json"]["output"] == {"answer": 42}


async def test_async_job_that_fails_remotely_is_a_job_fault_with_its_error(
    poller: RestAsyncConnector, storage: AssetStorage
) -> None:
    with pytest.raises(JobFailedError, match="remote model crashed") as failure:
        await poller.run(running("rest-async", async_job(2, 0.02, fail=True), storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert failure.value.details["remote_status"] == "failed"


async def test_async_job_lost_by_the_service_is_a_service_fault(
    fake_rest: FakeRest, poller: RestAsyncConnector, storage: AssetStorage
) -> None:
    job = running("rest-async", async_job(100, 0.05), storage)
    task = asyncio.create_task(poller.run(job))
    async with asyncio.timeout(5):
        await job.moving.wait()
    fake_rest.jobs.clear()  # what a restart of an in-memory service does

    with pytest.raises(JobFailedError, match="404") as failure:
        await task

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT


async def test_cancel_calls_the_remote_cancel_endpoint(
    fake_rest: FakeRest, poller: RestAsyncConnector, storage: AssetStorage
) -> None:
    job = running("rest-async", async_job(1000, 0.05), storage)
    task = asyncio.create_task(poller.run(job))
    async with asyncio.timeout(5):
        await job.moving.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    (remote_id,) = fake_rest.jobs
    assert fake_rest.cancelled == [remote_id]
    assert fake_rest.jobs[remote_id].view()["status"] == "cancelled"


async def test_a_poll_answer_without_the_status_field_is_a_job_fault(
    poller: RestAsyncConnector, storage: AssetStorage
) -> None:
    payload = async_job(3, 0.02)
    payload["poll"] = {**POLL, "status_field": "state"}

    with pytest.raises(JobFailedError, match="'state'") as failure:
        await poller.run(running("rest-async", payload, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
