"""The fake OpenAI server speaks the OpenAI API: SSE, images, background responses, errors."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from emp_queue.media import png_size
from emp_queue.testing.fakes.fixtures import fake_openai  # noqa: F401
from emp_queue.testing.fakes.openai import FakeOpenAI

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def http(fake_openai: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=fake_openai.url) as client:
        yield client


async def sse(http: httpx.AsyncClient, body: dict[str, Any]) -> list[Any]:
    """The ``data:`` payloads of a streamed completion (JSON decoded, except ``[DONE]``)."""
    events: list[Any] = []
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def read_lines(http: httpx.AsyncClient, body: dict[str, Any], into: list[str]) -> None:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line:
                into.append(line)


async def wait_for_terminal(http: httpx.AsyncClient, response_id: str) -> list[dict[str, Any]]:
    seen = []
    async with asyncio.timeout(3):
        while True:
            polled = (await http.get(f"/v1/responses/{response_id}")).json()
            seen.append(polled)
            if polled["status"] in ("completed", "failed", "cancelled", "incomplete"):
                return seen
            await asyncio.sleep(0.005)


async def test_a_streamed_completion_sends_chunks_usage_and_done(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.reply = "Hi there, how are you?"
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    events = await sse(http, body)

    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hi there, how are you?"
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all(c["usage"] is None for c in chunks)
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 5


async def test_some_servers_send_the_usage_chunk_with_choices_null(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.usage_chunk_choices = "null"

    events = await sse(http, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})

    assert events[-2]["choices"] is None
    assert events[-2]["usage"]["completion_tokens"] > 0


async def test_without_include_usage_no_usage_arrives(http: httpx.AsyncClient) -> None:
    events = await sse(http, {**CHAT, "stream": True})

    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])


async def test_a_whole_completion_and_max_tokens(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.reply = "one two three four"

    whole = (await http.post("/v1/chat/completions", json=CHAT)).json()
    cut = (await http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2})).json()

    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"]["content"] == "one two three four"
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"]["completion_tokens"] == 4
    assert cut["choices"][0]["message"]["content"] == "one two"
    assert cut["choices"][0]["finish_reason"] == "length"


async def test_refusals_arrive_in_the_refusal_field(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.refuse_next("I can't help with that.")
    fake_openai.refuse_next("I can't help with that.")

    whole = (await http.post("/v1/chat/completions", json=CHAT)).json()
    events = await sse(http, {**CHAT, "stream": True})

    message = whole["choices"][0]["message"]
    assert message["content"] is None
    assert message["refusal"] == "I can't help with that."
    streamed = "".join(e["choices"][0]["delta"].get("refusal") or "" for e in events[:-1])
    assert streamed == "I can't help with that."
    assert not any(e["choices"][0]["delta"].get("content") for e in events[:-1])


async def test_a_content_filter_stop_is_the_finish_reason(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.content_filter_next()

    events = await sse(http, {**CHAT, "stream": True})

    assert events[-2]["choices"][0]["finish_reason"] == "content_filter"


async def test_a_broken_stream_ends_without_usage_or_done(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.break_stream_next(after_chunks=2)
    received: list[str] = []
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    with pytest.raises(httpx.RemoteProtocolError):
        await read_lines(http, body, received)

    assert len(received) == 2
    assert "[DONE]" not in "".join(received)


async def test_tool_calls_stream_id_and_name_first_then_argument_pieces(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.call_tools_next(("get_weather", '{"city": "Paris", "unit": "celsius"}'))

    events = await sse(http, {**CHAT, "stream": True})

    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in events[1:-2]]
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert len(calls) > 2
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert "".join(c["function"]["arguments"] for c in calls) == (
        '{"city": "Paris", "unit": "celsius"}'
    )
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_rate_limits_answer_429_with_retry_after(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.rate_limit_next(count=2, retry_after_s=3)

    first, second, third = [await http.post("/v1/chat/completions", json=CHAT) for _ in range(3)]

    for limited in (first, second):
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "3"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert third.status_code == 200


async def test_server_errors_and_unknown_models_have_openai_error_bodies(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.fail_next(503, "The engine is currently overloaded.")

    overloaded = await http.post("/v1/chat/completions", json=CHAT)
    unknown = await http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})

    assert overloaded.status_code == 503
    assert overloaded.json()["error"]["message"] == "The engine is currently overloaded."
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


async def test_a_configured_key_is_required_as_bearer_auth() -> None:
    fake = FakeOpenAI(api_key="sk-test-123")
    async with fake.running() as url, httpx.AsyncClient(base_url=url) as http:
        anonymous = await http.get("/v1/models")
        wrong = await http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        right = await http.get("/v1/models", headers={"Authorization": "Bearer sk-test-123"})

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200
    assert "gpt-4o-mini" in [m["id"] for m in right.json()["data"]]


async def test_images_come_as_urls_or_base64_pngs(http: httpx.AsyncClient) -> None:
    by_url = await http.post(
        "/v1/images/generations", json={"model": "dall-e-3", "prompt": "a fox", "size": "256x256"}
    )
    inline = await http.post(
        "/v1/images/generations",
        json={
            "model": "gpt-image-1",
            "prompt": "a fox",
            "n": 2,
            "size": "512x512",
            "response_format": "url",
        },
    )

    (item,) = by_url.json()["data"]
    downloaded = await http.get(item["url"])
    assert png_size(downloaded.content) == (256, 256)
    assert item["revised_prompt"] == "a fox"
    images = inline.json()["data"]
    assert len(images) == 2
    assert all(png_size(base64.b64decode(i["b64_json"])) == (512, 512) for i in images)
    assert inline.json()["usage"]["total_tokens"] > 0


async def test_an_image_refused_by_policy_is_a_400(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.content_filter_next()

    refused = await http.post("/v1/images/generations", json={"prompt": "something"})

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "content_policy_violation"


async def test_a_background_response_is_polled_until_completed(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.response_duration_s = 0.05
    body = {
        "model": "gpt-4.1",
        "input": "draw a cat",
        "background": True,
        "tools": [{"type": "image_generation", "size": "256x256"}],
    }

    created = (await http.post("/v1/responses", json=body)).json()
    polls = await wait_for_terminal(http, created["id"])

    assert created["status"] == "queued"
    assert created["output"] == []
    assert "in_progress" in [p["status"] for p in polls]
    final = polls[-1]
    assert final["status"] == "completed"
    image, message = final["output"]
    assert image["type"] == "image_generation_call"
    assert png_size(base64.b64decode(image["result"])) == (256, 256)
    assert message["content"][0]["type"] == "output_text"
    assert final["usage"]["total_tokens"] > 0


async def test_a_background_response_can_be_cancelled(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.response_duration_s = 30
    body = {"model": "gpt-4.1", "input": "write a novel", "background": True}
    created = (await http.post("/v1/responses", json=body)).json()
    foreground = (await http.post("/v1/responses", json={**body, "background": False})).json()

    cancelled = await http.post(f"/v1/responses/{created['id']}/cancel")
    again = await http.post(f"/v1/responses/{created['id']}/cancel")
    polled = await http.get(f"/v1/responses/{created['id']}")
    not_background = await http.post(f"/v1/responses/{foreground['id']}/cancel")
    unknown = await http.get("/v1/responses/resp_nope")

    assert cancelled.json()["status"] == "cancelled"
    assert again.json()["status"] == "cancelled"
    assert polled.json()["status"] == "cancelled"
    assert polled.json()["output"] == []
    assert foreground["status"] == "completed"
    assert not_background.status_code == 400
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("script", "status"),
    [("fail_next_response", "failed"), ("content_filter_next", "incomplete")],
)
async def test_a_background_response_can_end_failed_or_incomplete(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
    script: str,
    status: str,
) -> None:
    getattr(fake_openai, script)()
    body = {"model": "gpt-4.1", "input": "hello", "background": True}

    created = (await http.post("/v1/responses", json=body)).json()
    final = (await wait_for_terminal(http, created["id"]))[-1]

    assert final["status"] == status
    if status == "failed":
        assert final["error"]["code"] == "server_error"
    else:
        assert final["incomplete_details"] == {"reason": "content_filter"}


async def test_a_response_longer_than_max_output_tokens_ends_incomplete(
    fake_openai: FakeOpenAI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_openai.reply = "one two three four five"
    body = {"model": "gpt-4.1", "input": "count", "max_output_tokens": 2}

    final = (await http.post("/v1/responses", json=body)).json()

    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][-1]["content"][0]["text"] == "one two"
    assert final["usage"]["output_tokens"] == 2
