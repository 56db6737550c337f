"""The openai connector's images and background responses, against the fake OpenAI server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from emp_queue.connectors.openai import OpenAIConfig, OpenAIConnector
from emp_queue.media import png_size
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import RecordingJob, make_job
from emp_queue.testing.fakes.openai import DEFAULT_REFUSAL, FakeOpenAI
from tests.integration.connectors.recorded import WatchingJob, failure_of

RESPONSE = {"operation": "responses", "model": "gpt-4.1", "input": "draw a red square"}
IMAGE_TOOL = {"type": "image_generation", "size": "64x64"}


@pytest_asyncio.fixture
async def connector(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIConnector]:
    connector = OpenAIConnector(
        OpenAIConfig(base_url=f"{fake_openai.url}/v1", poll_interval_s=0.02)
    )
    yield connector
    await connector.close()


def job_for(payload: dict[str, Any], storage: AssetStorage) -> RecordingJob:
    return RecordingJob(make_job("openai", payload), storage)


def stored_bytes(tmp_path: Path, asset: dict[str, Any]) -> bytes:
    data = (tmp_path / "assets" / str(asset["bucket"]) / str(asset["key"])).read_bytes()
    assert hashlib.sha256(data).hexdigest() == asset["sha256"]
    return data


async def test_image_urls_are_downloaded_and_stored(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage, tmp_path: Path
) -> None:
    payload = {"model": "dall-e-2", "prompt": "a red square", "n": 2, "size": "256x256"}
    job = job_for(payload, storage)

    result = await connector.run(job)

    assert len(result["outputs"]) == 2
    served = set(fake_openai.files.values())
    for asset in result["outputs"]:
        assert asset["content_type"] == "image/png"
        data = stored_bytes(tmp_path, asset)
        assert data in served
        assert png_size(data) == (256, 256)
    fractions = [f for f, _ in job.reports if f is not None]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


async def test_base64_images_are_decoded_and_stored(
    connector: OpenAIConnector, storage: AssetStorage, tmp_path: Path
) -> None:
    payload = {"operation": "images", "model": "gpt-image-1", "prompt": "blue", "size": "64x64"}

    result = await connector.run(job_for(payload, storage))

    (asset,) = result["outputs"]
    assert asset["content_type"] == "image/png"
    assert png_size(stored_bytes(tmp_path, asset)) == (64, 64)
    assert result["usage"]["output_tokens"] > 0


async def test_an_image_refused_by_policy_is_a_job_fault(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.refuse_next()

    failure = await failure_of(connector, job_for({"model": "dall-e-3", "prompt": "x"}, storage))

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert failure.details["code"] == "content_policy_violation"


async def test_a_background_response_is_polled_until_completed(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.response_duration_s = 0.2
    fake_openai.reply = "Here is your answer."
    job = job_for(RESPONSE, storage)

    result = await connector.run(job)

    assert result["status"] == "completed"
    assert result["text"] == "Here is your answer."
    assert result["id"] in fake_openai.responses
    assert fake_openai.responses[result["id"]]["background"] is True
    assert result["usage"]["output_tokens"] == 4
    messages = [m for _, m in job.reports]
    assert messages[0] == "queued"
    assert "in_progress" in messages
    assert job.reports[-1] == (1.0, "completed")


async def test_image_generation_output_is_stored_as_an_asset(
    connector: OpenAIConnector, storage: AssetStorage, tmp_path: Path
) -> None:
    result = await connector.run(job_for({**RESPONSE, "tools": [IMAGE_TOOL]}, storage))

    (asset,) = result["outputs"]
    assert asset["content_type"] == "image/png"
    assert png_size(stored_bytes(tmp_path, asset)) == (64, 64)


async def test_cancelling_the_job_cancels_the_background_response(
    fake_openai: FakeOpenAI, connector: OpenAIConnector, storage: AssetStorage
) -> None:
    fake_openai.response_duration_s = 30
    job = WatchingJob(make_job("openai", RESPONSE), storage)
    job.wanted = "in_progress"
    task = asyncio.create_task(connector.run(job))
    async with asyncio.timeout(5):
        await job.seen.wait()
    (response_id,) = fake_openai.responses

    task.cancel()
    async with asyncio.timeout(1):
        with pytest.raises(asyncio.CancelledError):
            await task

    assert fake_openai.responses[response_id]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("script", "failure_class", "says"),
    [
        ("fail_next_response", FailureClass.SERVICE_FAULT, "server_error"),
        ("content_filter_next", FailureClass.JOB_FAULT, "content filter"),
        ("refuse_next", FailureClass.JOB_FAULT, DEFAULT_REFUSAL),
    ],
)
async def test_responses_that_end_badly_fail_with_their_class(
    fake_openai: FakeOpenAI,
    connector: OpenAIConnector,
    storage: AssetStorage,
    script: str,
    failure_class: FailureClass,
    says: str,
) -> None:
    getattr(fake_openai, script)()

    failure = await failure_of(connector, job_for(RESPONSE, storage))

    assert failure.failure_class == failure_class
    assert says in str(failure)


async def test_a_response_cut_by_max_output_tokens_is_a_result_that_says_so(
    connector: OpenAIConnector, storage: AssetStorage
) -> None:
    result = await connector.run(job_for({**RESPONSE, "max_output_tokens": 3}, storage))

    assert result["status"] == "incomplete"
    assert result["incomplete_reason"] == "max_output_tokens"
    assert result["text"] == "You said: draw"
