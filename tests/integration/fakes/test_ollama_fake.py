"""The fake Ollama speaks Ollama's HTTP API, in-band stream errors and disconnects included."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from emp_queue.testing.fakes.fixtures import fake_ollama  # noqa: F401
from emp_queue.testing.fakes.ollama import FakeOllama

MODEL = "llama3.2:1b"


@pytest.fixture
async def http(fake_ollama: FakeOllama) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=fake_ollama.url) as client:
        yield client


async def ndjson(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) async for line in response.aiter_lines() if line]


async def test_generate_streams_tokens_then_a_done_line_with_counts(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_ollama.reply = "one two three four"

    lines = await ndjson(http, "/api/generate", {"model": MODEL, "prompt": "count to four"})

    *chunks, last = lines
    assert [c["done"] for c in chunks] == [False] * 4
    assert "".join(c["response"] for c in chunks) == "one two three four"
    assert last["done"] is True
    assert last["done_reason"] == "stop"
    assert last["eval_count"] == 4
    assert last["prompt_eval_count"] == 3
    assert last["total_duration"] >= last["eval_duration"] > 0
    assert isinstance(last["load_duration"], int)


async def test_chat_streams_message_deltas_and_answers_whole_without_stream(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_ollama.reply = "Hello there, friend."
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}]}

    *chunks, last = await ndjson(http, "/api/chat", body)
    whole = (await http.post("/api/chat", json={**body, "stream": False})).json()

    assert all(c["message"]["role"] == "assistant" for c in chunks)
    assert "".join(c["message"]["content"] for c in chunks) == "Hello there, friend."
    assert last["done"] is True
    assert whole["message"] == {"role": "assistant", "content": "Hello there, friend."}
    assert whole["done"] is True
    assert whole["eval_count"] == 3


async def test_num_predict_cuts_the_reply_with_done_reason_length(
    http: httpx.AsyncClient,
) -> None:
    body = {"model": MODEL, "prompt": "a b c d e f", "stream": False, "options": {"num_predict": 2}}

    reply = (await http.post("/api/generate", json=body)).json()

    assert reply["done_reason"] == "length"
    assert reply["eval_count"] == 2


async def test_an_error_line_arrives_mid_stream_after_http_200(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_ollama.fail_mid_stream(after_tokens=2, message="model runner has unexpectedly stopped")

    lines = await ndjson(http, "/api/generate", {"model": MODEL, "prompt": "a b c d e"})

    assert [line.get("done") for line in lines[:2]] == [False, False]
    assert lines[2:] == [{"error": "model runner has unexpectedly stopped"}]
    assert fake_ollama.generations[-1].done is False


async def test_unknown_models_and_injected_failures_answer_json_errors(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    missing = await http.post("/api/generate", json={"model": "nope", "prompt": "x"})
    fake_ollama.fail_next_requests(503, "server busy, please try again.", count=1)
    busy = await http.post("/api/chat", json={"model": MODEL, "messages": []})
    recovered = await http.post("/api/embed", json={"model": "nope", "input": "x"})

    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "nope" not found, try pulling it first'}
    assert busy.status_code == 503
    assert busy.json() == {"error": "server busy, please try again."}
    assert recovered.status_code == 404


async def test_closing_the_connection_stops_the_generation(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_ollama.token_delay_s = 0.01
    fake_ollama.reply = " ".join(["word"] * 500)

    async with http.stream("POST", "/api/generate", json={"model": MODEL, "prompt": "go"}) as r:
        lines = r.aiter_lines()
        assert json.loads(await anext(lines))["done"] is False
        assert json.loads(await anext(lines))["done"] is False
    generation = fake_ollama.generations[-1]
    async with asyncio.timeout(2):
        await generation.stopped.wait()
    sent = generation.tokens_sent
    await asyncio.sleep(0.05)

    assert generation.disconnected is True
    assert generation.done is False
    assert 2 <= sent < 500
    assert generation.tokens_sent == sent


async def test_embed_returns_one_unit_vector_per_input(http: httpx.AsyncClient) -> None:
    body = {"model": "nomic-embed-text", "input": ["first", "second", "first"]}

    reply = (await http.post("/api/embed", json=body)).json()

    first, second, again = reply["embeddings"]
    assert reply["model"] == "nomic-embed-text:latest"
    assert len(first) == 8
    assert math.isclose(sum(v * v for v in first), 1.0)
    assert first == again != second


async def test_tags_ps_and_version_tell_installed_from_loaded(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_ollama.vram_bytes = 1_000_000_000
    assert (await http.get("/api/ps")).json() == {"models": []}

    await http.post(
        "/api/generate", json={"model": MODEL, "prompt": "x", "stream": False, "keep_alive": "5m"}
    )
    await http.post("/api/embed", json={"model": "nomic-embed-text", "input": "x", "keep_alive": 0})

    installed = {m["name"] for m in (await http.get("/api/tags")).json()["models"]}
    (loaded,) = (await http.get("/api/ps")).json()["models"]
    assert installed == {MODEL, "nomic-embed-text:latest"}
    assert loaded["name"] == MODEL
    assert loaded["size_vram"] == 1_000_000_000 < loaded["size"]
    assert loaded["expires_at"].endswith("Z")
    assert (await http.get("/api/version")).json() == {"version": fake_ollama.version}


async def test_pull_streams_progress_then_installs_the_model(http: httpx.AsyncClient) -> None:
    lines = await ndjson(http, "/api/pull", {"model": "qwen2.5:0.5b"})

    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer = [line for line in lines if line.get("digest") == lines[1]["digest"]]
    completed = [line["completed"] for line in layer]
    assert completed == sorted(completed)
    assert completed[-1] == layer[0]["total"]
    tags = (await http.get("/api/tags")).json()["models"]
    assert "qwen2.5:0.5b" in {m["name"] for m in tags}


async def test_pull_of_an_unknown_model_fails_in_the_stream(http: httpx.AsyncClient) -> None:
    lines = await ndjson(http, "/api/pull", {"model": "no-such-model"})

    assert lines == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]


async def test_an_interrupted_pull_resumes_where_it_stopped(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_ollama.pull_delay_s = 0.01
    async with http.stream("POST", "/api/pull", json={"model": "qwen2.5:0.5b"}) as response:
        async for line in response.aiter_lines():
            if json.loads(line).get("completed"):
                break

    lines = await ndjson(http, "/api/pull", {"model": "qwen2.5:0.5b"})

    assert lines[1]["completed"] > 0
    assert lines[-1] == {"status": "success"}


async def test_delete_removes_a_model_and_answers_404_for_an_unknown_one(
    http: httpx.AsyncClient,
) -> None:
    deleted = await http.request("DELETE", "/api/delete", json={"model": "nomic-embed-text"})
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert [m["name"] for m in (await http.get("/api/tags")).json()["models"]] == [MODEL]

    again = await http.request("DELETE", "/api/delete", json={"model": "nomic-embed-text"})
    assert again.status_code == 404
    assert again.json() == {"error": "model 'nomic-embed-text' not found"}
    generate = await http.post("/api/generate", json={"model": "nomic-embed-text"})
    assert generate.status_code == 404
    old_field = await http.request("DELETE", "/api/delete", json={"name": MODEL})
    assert old_field.status_code == 200  # the deprecated "name" field still works
    empty = await http.request("DELETE", "/api/delete")
    assert (empty.status_code, empty.json()) == (400, {"error": "missing request body"})
    assert (await http.post("/api/delete", json={"model": MODEL})).status_code == 405


async def test_a_deleted_model_that_is_loaded_runs_on_until_it_expires(
    fake_ollama: FakeOllama,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    await http.post("/api/generate", json={"model": MODEL, "keep_alive": "5m"})

    deleted = await http.request("DELETE", "/api/delete", json={"model": MODEL})

    assert deleted.status_code == 200
    assert MODEL not in {m["name"] for m in (await http.get("/api/tags")).json()["models"]}
    assert [m["name"] for m in (await http.get("/api/ps")).json()["models"]] == [MODEL]
    # No new request can reach it; once it expires it is gone from /api/ps too.
    assert (await http.post("/api/generate", json={"model": MODEL})).status_code == 404
    fake_ollama.loaded[MODEL] = fake_ollama.loaded[MODEL].replace(year=2000)
    assert (await http.get("/api/ps")).json() == {"models": []}
    assert fake_ollama.deleted == {}
