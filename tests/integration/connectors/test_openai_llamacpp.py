"""The openai connector against the fake in llama.cpp's profile: the real server's quirks
(the connector contract runs against this profile too, in ``test_openai.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from emp_queue.connectors.openai import OpenAIConfig, OpenAIConnector
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import RecordingJob, make_job
from emp_queue.testing.fakes.openai import LLAMACPP_MODEL, FakeOpenAI
from tests.integration.connectors.recorded import failure_of

ALIAS = "gemma-3-270m-it-Q8_0"
LONG_PROMPT = " ".join(f"word{i}" for i in range(600))  # past the profile's 512-token context


def chat(content: str = "hello", model: str = ALIAS, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def job_for(payload: dict[str, Any], storage: AssetStorage) -> RecordingJob:
    return RecordingJob(make_job("openai", payload), storage)


@pytest_asyncio.fixture
async def connector(fake_llamacpp: FakeOpenAI) -> AsyncIterator[OpenAIConnector]:
    connector = OpenAIConnector(OpenAIConfig(base_url=f"{fake_llamacpp.url}/v1"))
    await connector.start()
    await connector.discover()
    yield connector
    await connector.close()


async def test_a_stream_cut_by_another_request_is_a_service_fault_not_an_empty_success(
    fake_llamacpp: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_llamacpp.chunk_delay_s = 0.05
    running = asyncio.create_task(connector.run(job_for(chat("a b c d e f g h"), storage)))
    await asyncio.sleep(0.15)
    async with httpx.AsyncClient() as client:  # any other request, as discovery's GET /models
        await client.get(f"{fake_llamacpp.url}/v1/models")
    with pytest.raises(JobFailedError) as raised:
        await running

    failure = raised.value
    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert "no finish_reason" in str(failure)


async def test_discovery_publishes_the_file_path_id_and_the_names_a_client_asks_for(
    connector: OpenAIConnector,
) -> None:
    found = await connector.discover()

    assert found.models.installed == [LLAMACPP_MODEL, "gemma-3-270m-it-Q8_0.gguf", ALIAS]


async def test_the_result_names_the_model_that_ran_not_the_name_echoed_back(
    connector: OpenAIConnector, storage: AssetStorage
) -> None:
    by_alias = await connector.run(job_for(chat(model=ALIAS), storage))
    by_other_name = await connector.run(job_for(chat(model="gpt-4o-mini"), storage))

    assert by_alias["model"] == LLAMACPP_MODEL
    assert by_alias["requested_model"] == ALIAS
    assert by_other_name["model"] == LLAMACPP_MODEL
    assert by_other_name["requested_model"] == "gpt-4o-mini"
    assert by_alias["finish_reason"] == "stop"
    assert by_alias["usage"] is None  # llama.cpp streams no usage even when asked


async def test_stream_false_is_honoured(connector: OpenAIConnector, storage: AssetStorage) -> None:
    result = await connector.run(job_for(chat("one two three", stream=False), storage))

    assert result["text"] == "You said: one two three"
    assert result["finish_reason"] == "stop"
    # Only the unstreamed answer carries usage on this server: proof it was not streamed.
    assert result["usage"]["completion_tokens"] == 5


async def test_a_prompt_past_the_context_window_is_a_job_fault_with_the_servers_reason(
    fake_llamacpp: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    failure = await failure_of(connector, job_for(chat(LONG_PROMPT), storage))

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert "maximum context length is 512 tokens" in str(failure)
    assert failure.details["code"] == "context_length_exceeded"


async def test_a_500_whose_body_is_a_validation_error_is_the_jobs_fault(
    connector: OpenAIConnector, storage: AssetStorage
) -> None:
    failure = await failure_of(connector, job_for(chat(max_tokens="lots"), storage))

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert failure.details["status"] == 500
    assert "max_tokens" in str(failure)


async def test_a_plain_500_is_still_the_services_fault(
    fake_llamacpp: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_llamacpp.fail_next(500, "llama_decode failed: out of memory")

    failure = await failure_of(connector, job_for(chat(), storage))

    assert failure.failure_class == FailureClass.SERVICE_FAULT


async def test_the_health_probe_does_not_interrupt_a_running_stream(
    fake_llamacpp: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_llamacpp.chunk_delay_s = 0.05
    running = asyncio.create_task(connector.run(job_for(chat("a b c d e f g h"), storage)))
    await asyncio.sleep(0.15)
    for _ in range(3):
        await connector.check_health()

    result = await running

    assert result["text"] == "You said: a b c d e f g h"
    assert result["finish_reason"] == "stop"
