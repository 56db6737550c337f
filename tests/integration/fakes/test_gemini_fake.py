"""The fake Gemini answers generateContent with text and inline images, and blocks on demand."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from emp_queue.media import png_size, solid_png
from emp_queue.testing.fakes.fixtures import fake_gemini  # noqa: F401
from emp_queue.testing.fakes.gemini import FakeGemini

FLASH = "/v1beta/models/gemini-2.5-flash:generateContent"
IMAGE = "/v1beta/models/gemini-2.5-flash-image:generateContent"


def contents(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": list(parts)}]}


@pytest.fixture
async def http(fake_gemini: FakeGemini) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=fake_gemini.url) as client:
        yield client


async def test_text_in_text_out_with_usage(
    fake_gemini: FakeGemini,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_gemini.reply = "Hello back"

    reply = (await http.post(FLASH, json=contents({"text": "hello"}))).json()

    (candidate,) = reply["candidates"]
    assert candidate["content"]["parts"] == [{"text": "Hello back"}]
    assert candidate["finishReason"] == "STOP"
    assert reply["usageMetadata"]["candidatesTokenCount"] == 2


async def test_inline_images_go_in_and_come_out(
    fake_gemini: FakeGemini,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    given = solid_png(8, 8, (1, 2, 3))
    inline = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(given).decode()}}

    reply = (await http.post(IMAGE, json=contents({"text": "make it red"}, inline))).json()
    broken = await http.post(IMAGE, json=contents({"inlineData": {"data": "%%%"}}))

    parts = reply["candidates"][0]["content"]["parts"]
    (image,) = [p["inlineData"] for p in parts if "inlineData" in p]
    assert image["mimeType"] == "image/png"
    assert png_size(base64.b64decode(image["data"])) == (64, 64)
    assert fake_gemini.received_images[0] == given
    assert broken.status_code == 400
    assert broken.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_safety_blocks_and_safety_stops(
    fake_gemini: FakeGemini,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_gemini.block_prompt_next()
    fake_gemini.safety_stop_next()

    blocked = (await http.post(FLASH, json=contents({"text": "x"}))).json()
    stopped = (await http.post(FLASH, json=contents({"text": "x"}))).json()

    assert blocked["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in blocked
    assert stopped["candidates"][0]["finishReason"] == "SAFETY"
    assert "content" not in stopped["candidates"][0]


async def test_errors_have_google_error_bodies(
    fake_gemini: FakeGemini,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_gemini.fail_next(429)

    exhausted = await http.post(FLASH, json=contents({"text": "x"}))
    unknown = await http.post("/v1beta/models/gemini-0:generateContent", json={})

    assert exhausted.status_code == 429
    assert exhausted.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["status"] == "NOT_FOUND"


async def test_a_configured_key_is_required() -> None:
    fake = FakeGemini(api_key="g-key")
    async with fake.running() as url, httpx.AsyncClient(base_url=url) as http:
        anonymous = await http.post(FLASH, json=contents({"text": "x"}))
        wrong = await http.post(
            FLASH, json=contents({"text": "x"}), headers={"x-goog-api-key": "nope"}
        )
        right = await http.post(
            FLASH, json=contents({"text": "x"}), headers={"x-goog-api-key": "g-key"}
        )

    assert anonymous.status_code == 403
    assert wrong.status_code == 400
    assert right.status_code == 200
