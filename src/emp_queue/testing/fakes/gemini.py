"""A fake Gemini API: ``POST /v1beta/models/{model}:generateContent`` with text and inline images.

Image models (a name containing ``image``, or ``responseModalities`` with ``IMAGE``) answer an
``inlineData`` PNG part besides the text. With ``api_key`` set, requests must carry it in
``x-goog-api-key`` (or ``?key=``). Failure modes for tests: :meth:`FakeGemini.block_prompt_next`
(``promptFeedback.blockReason``, no candidates), :meth:`FakeGemini.safety_stop_next`
(``finishReason: SAFETY`` with no content) and :meth:`FakeGemini.fail_next` (a Google error
body such as 429 ``RESOURCE_EXHAUSTED``, which carries a ``google.rpc.RetryInfo`` detail as the
real API does). ``model_latency_s`` makes a model slow to answer (as a thinking model is);
the wait ends early when the client disconnects. ``GET /v1beta/models`` lists the models.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from emp_queue.media import colour_for, solid_png
from emp_queue.testing.fakes.server import FakeService

JsonDict = dict[str, Any]
DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-image")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)


@dataclass(frozen=True)
class GeminiFailure:
    status: int
    message: str
    retry_delay_s: int | None = None


class _GoogleError(Exception):
    def __init__(self, status: int, message: str, retry_delay_s: int | None = None) -> None:
        super().__init__(message)
        error: JsonDict = {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
        if retry_delay_s is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_delay_s}s",
                }
            ]
        self.body = {"error": error}
        self.status = status


def _ratings(blocked: str | None = None) -> list[JsonDict]:
    return [
        {
            "category": c,
            "probability": "HIGH" if c == blocked else "NEGLIGIBLE",
            **({"blocked": True} if c == blocked else {}),
        }
        for c in SAFETY_CATEGORIES
    ]


def _usage(prompt_tokens: int, answer_tokens: int) -> JsonDict:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": answer_tokens,
        "totalTokenCount": prompt_tokens + answer_tokens,
    }


class FakeGemini(FakeService):
    """State and control of the fake; ``app()`` serves it, ``running()`` runs it on loopback."""

    service_name = "gemini"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        reply: str | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.models = list(models)
        self.reply = reply
        self.received_images: list[bytes] = []  # inline images the requests carried
        self.model_latency_s: dict[str, float] = {}
        self._scripted: list[tuple[str, str]] = []
        self._failures: list[GeminiFailure] = []

    def block_prompt_next(self, reason: str = "SAFETY") -> None:
        """The next request is blocked: ``promptFeedback.blockReason: <reason>``, no candidates."""
        self._scripted.append(("block", reason))

    def safety_stop_next(self, reason: str = "SAFETY") -> None:
        """The next answer stops with ``finishReason: <reason>`` (``SAFETY``,
        ``PROHIBITED_CONTENT``, ``IMAGE_SAFETY``...) and carries no content."""
        self._scripted.append(("safety", reason))

    def fail_next(
        self,
        status: int = 429,
        message: str = "Resource has been exhausted (e.g. check quota).",
        count: int = 1,
        retry_delay_s: int | None = 30,
    ) -> None:
        """Answer the next ``count`` requests with a Google API error body; a 429 says when to
        retry in a ``RetryInfo`` detail (``retryDelay: "30s"``), as Gemini does."""
        delay = retry_delay_s if status == 429 else None
        self._failures.extend([GeminiFailure(status, message, delay)] * count)

    def add_routes(self, app: FastAPI) -> None:
        app.add_api_route("/v1beta/models", self._list_models, methods=["GET"])
        app.add_api_route("/v1beta/models/{model_action}", self._call, methods=["POST"])

    async def _list_models(self, request: Request) -> JSONResponse:
        try:
            self._authorise(request)
        except _GoogleError as error:
            return JSONResponse(error.body, status_code=error.status)
        models = [
            {
                "name": f"models/{name}",
                "displayName": name,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for name in self.models
        ]
        return JSONResponse({"models": models})

    async def _call(self, model_action: str, request: Request) -> JSONResponse:
        try:
            self._authorise(request)
            model, _, action = model_action.partition(":")
            if action != "generateContent" or model not in self.models:
                raise _GoogleError(
                    404,
                    f"models/{model} is not found for API version v1beta, "
                    f"or is not supported for {action or 'this method'}.",
                )
            if self._failures:
                failure = self._failures.pop(0)
                raise _GoogleError(failure.status, failure.message, failure.retry_delay_s)
            body = await request.json()
            deadline = time.monotonic() + self.model_latency_s.get(model, 0.0)
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    return JSONResponse({}, status_code=499)
                await asyncio.sleep(0.02)
            return JSONResponse(self._generate(model, body))
        except _GoogleError as error:
            return JSONResponse(error.body, status_code=error.status)

    def _authorise(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if given is None:
            raise _GoogleError(
                403,
                "Method doesn't allow unregistered callers (callers without "
                "established identity). Please use API Key or other form of API "
                "consumer identity to call this API.",
            )
        if given != self.api_key:
            raise _GoogleError(400, "API key not valid. Please pass a valid API key.")

    def _prompt_text(self, body: JsonDict) -> str:
        texts = []
        for c_index, content in enumerate(body.get("contents") or []):
            for p_index, part in enumerate(content.get("parts") or []):
                inline = part.get("inlineData") or part.get("inline_data")
                if inline is not None:
                    try:
                        self.received_images.append(base64.b64decode(inline["data"], validate=True))
                    except (binascii.Error, KeyError) as error:
                        raise _GoogleError(
                            400,
                            f"Invalid value at 'contents[{c_index}].parts["
                            f"{p_index}].inline_data.data' (TYPE_BYTES), Base64 "
                            "decoding failed",
                        ) from error
                if "text" in part:
                    texts.append(str(part["text"]))
        if not texts and not self.received_images:
            raise _GoogleError(400, "* GenerateContentRequest.contents: contents is not specified")
        return " ".join(texts)

    def _generate(self, model: str, body: JsonDict) -> JsonDict:
        prompt = self._prompt_text(body)
        prompt_tokens = len(prompt.split()) + 1
        head: JsonDict = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
        scripted, reason = self._scripted.pop(0) if self._scripted else (None, "")
        if scripted == "block":
            return {
                **head,
                "promptFeedback": {
                    "blockReason": reason,
                    "safetyRatings": _ratings(SAFETY_CATEGORIES[3]),
                },
                "usageMetadata": _usage(prompt_tokens, 0),
            }
        if scripted == "safety":
            candidate: JsonDict = {
                "finishReason": reason,
                "index": 0,
                "safetyRatings": _ratings(SAFETY_CATEGORIES[3]),
            }
            return {**head, "candidates": [candidate], "usageMetadata": _usage(prompt_tokens, 0)}
        text = self.reply if self.reply is not None else f"You said: {prompt}"
        parts: list[JsonDict] = [{"text": text}]
        modalities = (body.get("generationConfig") or {}).get("responseModalities") or []
        if "image" in model or "IMAGE" in modalities:
            png = solid_png(64, 64, colour_for(json.dumps(body, sort_keys=True)))
            parts.append(
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}}
            )
        candidate = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": _ratings(),
        }
        return {
            **head,
            "candidates": [candidate],
            "usageMetadata": _usage(prompt_tokens, len(text.split())),
        }
