"""The openai connector against the fake OpenAI server: the contract, chat, and HTTP failures."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from emp_queue.connectors.base import ServiceUnavailableError
from emp_queue.connectors.openai import OpenAIConfig, OpenAIConnector
from emp_queue.connectors.registry import load_connector
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import (
    ConnectorContract,
    RecordingJob,
    closed_port,
    make_job,
)
from emp_queue.testing.fakes.openai import DEFAULT_REFUSAL, FakeOpenAI
from tests.integration.connectors.recorded import failure_of

MODEL = "gpt-4o-mini"
LONG_MESSAGE = " ".join(f"word{i}" for i in range(300))


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


class TestOpenAIContract(ConnectorContract):
    """The contract against each server profile: OpenAI itself, and llama.cpp's server."""

    @pytest_asyncio.fixture(params=["openai", "llamacpp"])
    async def connector(  # type: ignore[override]
        self, request: pytest.FixtureRequest
    ) -> AsyncIterator[OpenAIConnector]:
        fake = FakeOpenAI.llamacpp() if request.param == "llamacpp" else FakeOpenAI()
        fake.chunk_delay_s = 0.02
        async with fake.running():
            connector = OpenAIConnector(OpenAIConfig(base_url=f"{fake.url}/v1"))
            await connector.start()
            yield connector
            await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return chat("hello there")

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        # A parameter of the wrong type: OpenAI answers 400, llama.cpp 500 with a body that
        # says the request is invalid; both are the job's fault.
        return chat("hello", temperature="hot")

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return chat(LONG_MESSAGE)

    @pytest.fixture
    def unreachable(self) -> OpenAIConnector:
        return OpenAIConnector(OpenAIConfig(base_url=f"http://127.0.0.1:{closed_port()}/v1"))


def connector_for(fake: FakeOpenAI, **settings: Any) -> OpenAIConnector:
    return OpenAIConnector(OpenAIConfig(base_url=f"{fake.url}/v1", **settings))


@pytest_asyncio.fixture
async def connector(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIConnector]:
    connector = connector_for(fake_openai)
    yield connector
    await connector.close()


def job_for(payload: dict[str, Any], storage: AssetStorage) -> RecordingJob:
    return RecordingJob(make_job("openai", payload), storage)


def test_the_entry_point_names_the_connector() -> None:
    assert load_connector("openai") is OpenAIConnector


async def test_a_chat_returns_text_finish_reason_and_usage(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.reply = "Hi there, how are you?"

    result = await connector.run(job_for(chat(), storage))

    assert result["model"] == MODEL
    assert result["text"] == "Hi there, how are you?"
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 5
    assert "tool_calls" not in result


async def test_a_usage_chunk_with_choices_null_is_tolerated(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.usage_chunk_choices = "null"
    fake_openai.reply = "one two three"

    result = await connector.run(job_for(chat(), storage))

    assert result["text"] == "one two three"
    assert result["usage"]["completion_tokens"] == 3


async def test_tool_call_pieces_are_merged_by_index(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    weather = '{"city": "Paris", "unit": "celsius"}'
    fake_openai.call_tools_next(("get_weather", weather), ("get_time", '{"zone": "Europe/Paris"}'))

    result = await connector.run(job_for(chat("weather and time in Paris?"), storage))

    assert result["finish_reason"] == "tool_calls"
    calls = result["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"zone": "Europe/Paris"}
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)


async def test_progress_counts_chunks_against_max_tokens(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.chunk_delay_s = 0.1
    job = job_for(chat(LONG_MESSAGE, max_tokens=6), storage)

    result = await connector.run(job)

    assert result["finish_reason"] == "length"
    token_reports = [(f, m) for f, m in job.reports if m and m.endswith("tokens")]
    assert token_reports[-1] == (1.0, "6 tokens")
    for fraction, message in token_reports[:-1]:
        assert message is not None
        assert fraction == pytest.approx(min(int(message.split()[0]) / 6, 0.99))


async def test_content_filter_is_a_job_fault(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.content_filter_next()

    failure = await failure_of(connector, job_for(chat("one two three four"), storage))

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert "content_filter" in str(failure)


async def test_a_refusal_is_a_job_fault_quoting_it(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.refuse_next()

    failure = await failure_of(connector, job_for(chat(), storage))

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert DEFAULT_REFUSAL in str(failure)


async def test_a_stream_broken_before_done_is_a_service_fault(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.break_stream_next(after_chunks=2)

    failure = await failure_of(connector, job_for(chat("a b c d e f"), storage))

    assert failure.failure_class == FailureClass.SERVICE_FAULT


async def test_a_429_is_retried_in_place_after_retry_after(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.rate_limit_next(count=1, retry_after_s=1)
    started = time.monotonic()

    result = await connector.run(job_for(chat(), storage))

    assert result["text"] == "You said: hello"
    assert fake_openai.requests_served == 2
    assert time.monotonic() - started >= 1.0


async def test_429s_beyond_the_retries_are_a_service_fault(
    fake_openai: FakeOpenAI, storage: AssetStorage
) -> None:
    fake_openai.rate_limit_next(count=3, retry_after_s=1)
    connector = connector_for(fake_openai, max_429_retries=1)
    try:
        failure = await failure_of(connector, job_for(chat(), storage))
    finally:
        await connector.close()

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert failure.details["status"] == 429
    assert failure.details["retry_after_s"] == 1.0
    assert fake_openai.requests_served == 2


async def test_a_429_asking_for_a_long_wait_fails_at_once(
    fake_openai: FakeOpenAI, storage: AssetStorage
) -> None:
    fake_openai.rate_limit_next(count=1, retry_after_s=1)
    connector = connector_for(fake_openai, max_retry_after_s=0.5)
    try:
        failure = await failure_of(connector, job_for(chat(), storage))
    finally:
        await connector.close()

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert fake_openai.requests_served == 1


async def test_an_exhausted_quota_is_not_retried_in_place(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.fail_next(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        error_type="insufficient_quota",
        code="insufficient_quota",
    )

    failure = await failure_of(connector, job_for(chat(), storage))

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert failure.details["code"] == "insufficient_quota"
    assert fake_openai.requests_served == 1


@pytest.mark.parametrize(
    ("status", "failure_class"),
    [
        (400, FailureClass.JOB_FAULT),
        (404, FailureClass.JOB_FAULT),
        (500, FailureClass.SERVICE_FAULT),
        (503, FailureClass.SERVICE_FAULT),
    ],
)
async def test_http_errors_map_to_failure_classes(
    fake_openai: FakeOpenAI,
    connector: OpenAIConnector,
    storage: AssetStorage,
    status: int,
    failure_class: FailureClass,
) -> None:
    fake_openai.fail_next(status, f"failure {status}", error_type="invalid_request_error")

    failure = await failure_of(connector, job_for(chat(), storage))

    assert failure.failure_class == failure_class
    assert f"failure {status}" in str(failure)


async def test_a_refused_api_key_is_this_workers_problem_not_the_jobs(
    fake_openai: FakeOpenAI, storage: AssetStorage
) -> None:
    fake_openai.api_key = "sk-right"
    wrong = connector_for(fake_openai, api_key="sk-wrong")
    right = connector_for(fake_openai, api_key="sk-right")
    try:
        failure = await failure_of(wrong, job_for(chat(), storage))
        result = await right.run(job_for(chat(), storage))
    finally:
        await wrong.close()
        await right.close()

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert "EMP_OPENAI_API_KEY" in str(failure)
    assert result["text"] == "You said: hello"


async def test_a_base_url_without_the_api_is_a_service_fault(
    fake_openai: FakeOpenAI, storage: AssetStorage
) -> None:
    connector = OpenAIConnector(OpenAIConfig(base_url=fake_openai.url))  # no /v1
    try:
        failure = await failure_of(connector, job_for(chat(), storage))
    finally:
        await connector.close()

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert "EMP_OPENAI_BASE_URL" in str(failure)


async def test_a_payload_without_an_operation_or_its_fields_is_a_job_fault(
    connector: OpenAIConnector, storage: AssetStorage
) -> None:
    failure = await failure_of(connector, job_for({"model": MODEL}, storage))

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert "operation" in str(failure)


async def test_a_long_answer_goes_to_the_asset_store(
    fake_openai: FakeOpenAI, storage: AssetStorage, tmp_path: Path
) -> None:
    fake_openai.reply = "x" * 500
    connector = connector_for(fake_openai, inline_max_bytes=100)
    try:
        result = await connector.run(job_for(chat(), storage))
    finally:
        await connector.close()

    assert "text" not in result
    stored = tmp_path / "assets" / "assets" / result["text_asset"]["key"]
    assert stored.read_text() == "x" * 500


async def test_discovery_lists_the_servers_models(
    fake_openai: FakeOpenAI, connector: OpenAIConnector
) -> None:
    found = await connector.discover()

    assert found.models.installed == fake_openai.models
    assert found.details["models_source"] == "server"


async def test_discovery_falls_back_to_configured_models_only_when_there_are_some(
    fake_openai: FakeOpenAI,
) -> None:
    with_models = connector_for(fake_openai, models=["my-model"])
    without = connector_for(fake_openai)
    fake_openai.fail_next(500, count=2)
    try:
        found = await with_models.discover()
        with pytest.raises(ServiceUnavailableError, match="EMP_OPENAI_MODELS"):
            await without.discover()
    finally:
        await with_models.close()
        await without.close()

    assert found.models.installed == ["my-model"]
    assert found.details["models_source"] == "config"
