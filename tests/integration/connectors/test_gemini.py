"""The gemini connector against the fake Gemini API: the contract, refusals, images, quotas."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from emp_queue.connectors.gemini import GeminiConfig, GeminiConnector
from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.media import png_size, solid_png
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import (
    ConnectorContract,
    RecordingJob,
    closed_port,
    make_job,
)
from emp_queue.testing.fakes.gemini import FakeGemini

KEY = "test-key-123"
SLOW_MODEL = "gemini-2.5-pro"


def config(url: str, key: str | None = KEY, **extra: Any) -> GeminiConfig:
    return GeminiConfig(base_url=url, api_key=SecretStr(key) if key else None, **extra)


@pytest.fixture
def gemini(fake_gemini: FakeGemini) -> FakeGemini:
    fake_gemini.api_key = KEY
    fake_gemini.model_latency_s[SLOW_MODEL] = 30.0
    return fake_gemini


class TestGeminiContract(ConnectorContract):
    @pytest_asyncio.fixture
    async def connector(self, gemini: FakeGemini) -> AsyncIterator[GeminiConnector]:
        connector = GeminiConnector(config(gemini.url))
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return {"model": "gemini-2.5-flash", "prompt": "hello"}

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {"model": "gemini-9-ultra", "prompt": "hello"}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return {"model": SLOW_MODEL, "prompt": "think about it"}

    @pytest.fixture
    def unreachable(self) -> GeminiConnector:
        return GeminiConnector(config(f"http://127.0.0.1:{closed_port()}"))


@pytest_asyncio.fixture
async def connector(gemini: FakeGemini) -> AsyncIterator[GeminiConnector]:
    connector = GeminiConnector(config(gemini.url))
    await connector.start()
    yield connector
    await connector.close()


def running(payload: dict[str, Any], storage: AssetStorage) -> RecordingJob:
    return RecordingJob(make_job("gemini", payload), storage)


async def test_text_answer_with_progress_at_both_ends(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage
) -> None:
    gemini.reply = "Hello back"

    result = await connector.run(
        job := running({"model": "gemini-2.5-flash", "prompt": "hi"}, storage)
    )

    assert result["text"] == "Hello back"
    assert result["finish_reason"] == "STOP"
    assert result["usage"]["candidatesTokenCount"] == 2
    assert result["outputs"] == []
    assert [f for f, _ in job.reports] == [0.0, 1.0]
    assert all(message for _, message in job.reports)


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT"])
async def test_a_blocked_prompt_is_a_job_fault_naming_the_reason(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage, reason: str
) -> None:
    gemini.block_prompt_next(reason)

    with pytest.raises(JobFailedError, match=f"blockReason {reason}") as failure:
        await connector.run(running({"model": "gemini-2.5-flash", "prompt": "x"}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert failure.value.details["block_reason"] == reason


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY"])
async def test_a_safety_stop_is_a_job_fault_naming_the_reason(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage, reason: str
) -> None:
    gemini.safety_stop_next(reason)

    with pytest.raises(JobFailedError, match=f"finishReason {reason}") as failure:
        await connector.run(running({"model": "gemini-2.5-flash", "prompt": "x"}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert failure.value.details["blocked"] == ["HARM_CATEGORY_DANGEROUS_CONTENT"]


async def test_images_go_in_as_inline_data_and_come_back_as_assets(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage, tmp_path: Path
) -> None:
    given = solid_png(8, 8, (9, 9, 9))
    payload = {
        "model": "gemini-2.5-flash-image",
        "prompt": "make it red",
        "images": [{"mime_type": "image/png", "data_base64": base64.b64encode(given).decode()}],
    }

    result = await connector.run(running(payload, storage))

    assert gemini.received_images == [given]
    (image,) = result["outputs"]
    assert image["content_type"] == "image/png"
    stored = tmp_path / "assets" / image["bucket"] / image["key"]
    assert png_size(stored.read_bytes()) == (64, 64)
    assert result["text"].startswith("You said: make it red")


async def test_rate_limit_is_a_service_fault_carrying_retry_after(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage
) -> None:
    gemini.fail_next(429, retry_delay_s=37)

    with pytest.raises(JobFailedError, match="429") as failure:
        await connector.run(running({"model": "gemini-2.5-flash", "prompt": "x"}, storage))

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    assert failure.value.details["retry_after_s"] == 37.0
    assert failure.value.details["google_status"] == "RESOURCE_EXHAUSTED"


async def test_bad_request_is_a_job_fault(
    connector: GeminiConnector, storage: AssetStorage
) -> None:
    contents = [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "%"}}]}]

    with pytest.raises(JobFailedError, match="Base64 decoding failed") as failure:
        await connector.run(running({"model": "gemini-2.5-flash", "contents": contents}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert failure.value.details["status"] == 400


async def test_server_error_is_a_service_fault(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage
) -> None:
    gemini.fail_next(503, "The model is overloaded. Please try again later.")

    with pytest.raises(JobFailedError, match="overloaded") as failure:
        await connector.run(running({"model": "gemini-2.5-flash", "prompt": "x"}, storage))

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT


async def test_a_rejected_key_is_not_the_jobs_fault(
    gemini: FakeGemini, storage: AssetStorage
) -> None:
    connector = GeminiConnector(config(gemini.url, key="wrong"))
    await connector.start()
    try:
        with pytest.raises(JobFailedError, match="EMP_GEMINI_API_KEY") as failure:
            await connector.run(running({"model": "gemini-2.5-flash", "prompt": "x"}, storage))
    finally:
        await connector.close()

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT


async def test_a_missing_key_is_a_configuration_error_at_start(gemini: FakeGemini) -> None:
    with pytest.raises(ConfigurationError, match="EMP_GEMINI_API_KEY"):
        await GeminiConnector(config(gemini.url, key=None)).start()


async def test_invalid_payload_is_a_job_fault(
    connector: GeminiConnector, storage: AssetStorage
) -> None:
    payload = {"model": "gemini-2.5-flash", "prompt": "x", "contents": [{"parts": []}]}

    with pytest.raises(JobFailedError, match="exactly one of 'contents' or 'prompt'") as failure:
        await connector.run(running(payload, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT


async def test_a_long_answer_is_stored_as_a_text_asset(
    gemini: FakeGemini, connector: GeminiConnector, storage: AssetStorage
) -> None:
    gemini.reply = "word " * 10_000

    result = await connector.run(running({"model": "gemini-2.5-flash", "prompt": "x"}, storage))

    assert "text" not in result
    (asset,) = result["outputs"]
    assert result["text_asset"] == asset["url"]
    assert asset["size"] == 50_000


async def test_discovery_uses_configured_models_else_the_model_list(gemini: FakeGemini) -> None:
    configured = GeminiConnector(config(gemini.url, models=["gemini-2.5-flash"]))
    listed = GeminiConnector(config(gemini.url))
    for connector in (configured, listed):
        await connector.start()
    try:
        assert (await configured.discover()).models.installed == ["gemini-2.5-flash"]
        assert (await listed.discover()).models.installed == gemini.models
    finally:
        for connector in (configured, listed):
            await connector.close()
