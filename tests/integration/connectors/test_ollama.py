"""The ollama connector against the fake Ollama: the contract, then Ollama's awkward cases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from emp_queue.connectors.ollama import OllamaConfig, OllamaConnector
from emp_queue.connectors.registry import load_connector
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import (
    ConnectorContract,
    RecordingJob,
    closed_port,
    make_job,
)
from emp_queue.testing.fakes.ollama import MID_STREAM_ERROR, FakeOllama
from emp_queue.testing.fakes.openai import FakeOpenAI
from tests.integration.connectors.recorded import WatchingJob, failure_of

MODEL = "llama3.2:1b"
LONG_PROMPT = " ".join(f"word{i}" for i in range(300))


class TestOllamaContract(ConnectorContract):
    @pytest_asyncio.fixture
    async def connector(  # type: ignore[override]
        self, fake_ollama: FakeOllama
    ) -> AsyncIterator[OllamaConnector]:
        fake_ollama.token_delay_s = 0.02
        connector = OllamaConnector(OllamaConfig(url=fake_ollama.url))
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return {"model": MODEL, "prompt": "hello there"}

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {"model": "no-such-model:7b", "prompt": "hello"}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return {"model": MODEL, "prompt": LONG_PROMPT}

    @pytest.fixture
    def unreachable(self) -> OllamaConnector:
        return OllamaConnector(OllamaConfig(url=f"http://127.0.0.1:{closed_port()}"))


@pytest_asyncio.fixture
async def connector(fake_ollama: FakeOllama) -> AsyncIterator[OllamaConnector]:
    connector = OllamaConnector(OllamaConfig(url=fake_ollama.url))
    await connector.start()
    yield connector
    await connector.close()


def job_for(payload: dict[str, Any], storage: AssetStorage) -> RecordingJob:
    return RecordingJob(make_job("ollama", payload), storage)


def test_the_entry_point_names_the_connector() -> None:
    assert load_connector("ollama") is OllamaConnector


async def test_generate_returns_text_done_reason_and_usage_in_ms(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    fake_ollama.reply = "one two three"

    result = await connector.run(job_for({"model": MODEL, "prompt": "count"}, storage))

    assert result["model"] == MODEL
    assert result["text"] == "one two three"
    assert result["done_reason"] == "stop"
    usage = result["usage"]
    assert usage["eval_count"] == 3
    assert usage["prompt_eval_count"] == 1
    assert usage["total_duration_ms"] >= usage["eval_duration_ms"] > 0
    assert "total_duration" not in usage


async def test_messages_make_a_chat_and_the_result_holds_the_assistant_message(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    fake_ollama.reply = "Hello there, friend."
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}

    result = await connector.run(job_for(payload, storage))

    assert result["message"] == {"role": "assistant", "content": "Hello there, friend."}
    assert fake_ollama.generations[-1].endpoint == "chat"
    assert fake_ollama.generations[-1].done


async def test_progress_counts_tokens_against_num_predict(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    fake_ollama.token_delay_s = 0.1
    payload = {"model": MODEL, "prompt": LONG_PROMPT, "options": {"num_predict": 8}}
    job = job_for(payload, storage)

    result = await connector.run(job)

    assert result["done_reason"] == "length"
    assert result["usage"]["eval_count"] == 8
    token_reports = [(f, m) for f, m in job.reports if m and m.endswith("tokens")]
    assert token_reports[-1] == (1.0, "8 tokens")
    for fraction, message in token_reports[:-1]:
        assert message is not None
        assert fraction == pytest.approx(min(int(message.split()[0]) / 8, 0.99))


async def test_without_a_limit_progress_creeps_up_and_reaches_one_only_when_done(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    fake_ollama.token_delay_s = 0.01
    job = job_for({"model": MODEL, "prompt": " ".join(["w"] * 120)}, storage)

    await connector.run(job)

    fractions = [f for f, _ in job.reports if f is not None]
    assert len(fractions) >= 3
    assert fractions == sorted(fractions)
    assert all(f < 1.0 for f in fractions[:-1])
    assert fractions[-1] == 1.0


@pytest.mark.parametrize(
    ("message", "failure_class"),
    [
        (MID_STREAM_ERROR, FailureClass.SERVICE_FAULT),
        ("input length exceeds maximum context length", FailureClass.JOB_FAULT),
    ],
)
async def test_an_error_line_after_http_200_fails_the_job(
    fake_ollama: FakeOllama,
    connector: OllamaConnector,
    storage: AssetStorage,
    message: str,
    failure_class: FailureClass,
) -> None:
    fake_ollama.fail_mid_stream(after_tokens=2, message=message)

    failure = await failure_of(connector, job_for({"model": MODEL, "prompt": "a b c d"}, storage))

    assert failure.failure_class == failure_class
    assert message in str(failure)
    assert failure.details["tokens"] == 2


async def test_a_missing_model_is_a_job_fault_naming_the_fix(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    failure = await failure_of(
        connector, job_for({"model": "qwen2.5:0.5b", "prompt": "x"}, storage)
    )

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert "EMP_OLLAMA_PULL_MISSING" in str(failure)
    assert "qwen2.5:0.5b" not in fake_ollama.models


async def test_pull_missing_downloads_the_model_with_progress_then_runs(
    fake_ollama: FakeOllama, storage: AssetStorage
) -> None:
    fake_ollama.pull_delay_s = 0.1
    connector = OllamaConnector(OllamaConfig(url=fake_ollama.url, pull_missing=True))
    job = job_for({"model": "qwen2.5:0.5b", "prompt": "hello"}, storage)
    try:
        result = await connector.run(job)
        found = await connector.discover()
    finally:
        await connector.close()

    assert result["text"] == "You said: hello"
    assert "qwen2.5:0.5b" in found.models.installed
    pulls = [(f, m) for f, m in job.reports if m and m.startswith("pulling qwen2.5:0.5b: ")]
    assert len(pulls) >= 2
    assert all(f is not None and f <= 0.5 for f, _ in pulls)
    fractions = [f for f, _ in job.reports if f is not None]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


async def test_pulling_a_model_the_registry_lacks_is_a_job_fault(
    fake_ollama: FakeOllama, storage: AssetStorage
) -> None:
    connector = OllamaConnector(OllamaConfig(url=fake_ollama.url, pull_missing=True))
    try:
        failure = await failure_of(connector, job_for({"model": "nope:1b", "prompt": "x"}, storage))
    finally:
        await connector.close()

    assert failure.failure_class == FailureClass.JOB_FAULT
    assert "file does not exist" in str(failure)


async def test_cancel_closes_the_stream_and_ollama_sees_the_disconnect(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    fake_ollama.token_delay_s = 0.05
    job = WatchingJob(make_job("ollama", {"model": MODEL, "prompt": LONG_PROMPT}), storage)
    job.wanted = " tokens"
    task = asyncio.create_task(connector.run(job))
    async with asyncio.timeout(5):
        await job.seen.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    generation = fake_ollama.generations[-1]
    async with asyncio.timeout(1):
        await generation.stopped.wait()

    assert generation.disconnected is True
    assert generation.done is False
    assert generation.tokens_sent < generation.tokens_planned


@pytest.mark.parametrize("status", [429, 503, 500])
async def test_busy_or_broken_daemon_is_a_service_fault(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage, status: int
) -> None:
    fake_ollama.fail_next_requests(status, "server busy, please try again.  maximum pending")

    failure = await failure_of(connector, job_for({"model": MODEL, "prompt": "x"}, storage))

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert failure.details["status"] == status


async def test_a_404_from_something_that_is_not_ollama_is_a_service_fault(
    fake_openai: FakeOpenAI, storage: AssetStorage
) -> None:
    connector = OllamaConnector(OllamaConfig(url=fake_openai.url))
    try:
        failure = await failure_of(connector, job_for({"model": MODEL, "prompt": "x"}, storage))
    finally:
        await connector.close()

    assert failure.failure_class == FailureClass.SERVICE_FAULT
    assert "EMP_OLLAMA_URL" in str(failure)


async def test_small_embeddings_are_inline(
    connector: OllamaConnector, storage: AssetStorage
) -> None:
    payload = {"operation": "embed", "model": "nomic-embed-text", "input": ["a", "b"]}

    result = await connector.run(job_for(payload, storage))

    assert result["count"] == 2
    assert result["dimensions"] == 8
    assert len(result["embeddings"]) == 2
    assert result["usage"]["prompt_eval_count"] == 2


async def test_large_embeddings_go_to_the_asset_store(
    fake_ollama: FakeOllama, storage: AssetStorage, tmp_path: Path
) -> None:
    fake_ollama.embedding_dimensions = 1024
    connector = OllamaConnector(OllamaConfig(url=fake_ollama.url))
    payload = {"operation": "embed", "model": "nomic-embed-text", "input": ["a"] * 20}
    job = job_for(payload, storage)
    try:
        result = await connector.run(job)
    finally:
        await connector.close()

    assert "embeddings" not in result
    assert len(json.dumps(result)) < 2048
    asset = result["embeddings_asset"]
    assert asset["content_type"] == "application/json"
    stored = json.loads((tmp_path / "assets" / "assets" / asset["key"]).read_bytes())
    assert len(stored) == 20
    assert len(stored[0]) == 1024


async def test_discovery_tells_installed_loaded_and_version(
    fake_ollama: FakeOllama, connector: OllamaConnector, storage: AssetStorage
) -> None:
    before = await connector.discover()
    await connector.run(job_for({"model": MODEL, "prompt": "x"}, storage))
    after = await connector.discover()

    assert set(before.models.installed) == {MODEL, "nomic-embed-text:latest"}
    assert before.models.loaded == []
    assert after.models.loaded == [MODEL]
    assert after.details["fully_in_vram"] == [MODEL]
    assert after.version == "0.9.6"
    # Sizes from /api/tags (and /api/ps once loaded), for placement and explain's model cost.
    assert set(after.models.sizes) == {MODEL, "nomic-embed-text:latest"}
    assert all(size > 0 for size in after.models.sizes.values())


async def test_start_fails_as_a_service_fault_when_nothing_listens() -> None:
    connector = OllamaConnector(OllamaConfig(url=f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(JobFailedError) as failure:
        await connector.start()
    await connector.close()

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    assert "EMP_OLLAMA_URL" in str(failure.value)
