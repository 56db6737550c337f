"""One chat completion of the fake OpenAI server, whole or streamed over SSE."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from emp_queue.testing.fakes.openai_protocol import (
    ApiError,
    JsonDict,
    Outcome,
    ScriptedOutcome,
    completion_usage,
    missing,
    new_id,
    pieces_of,
    text_of,
)

if TYPE_CHECKING:
    from emp_queue.testing.fakes.openai import FakeOpenAI


class StreamBrokenError(Exception):
    """Raised inside a stream so that the server drops the connection, as a failing proxy does."""


def _sse(payload: JsonDict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


NUMBER_PARAMETERS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
INTEGER_PARAMETERS = ("max_tokens", "max_completion_tokens", "n", "seed")


def check_parameters(fake: FakeOpenAI, body: JsonDict) -> None:
    """A parameter of the wrong type: OpenAI's 400, or llama-cpp-python's 500 whose message is
    the request validation error itself."""
    for name in (*NUMBER_PARAMETERS, *INTEGER_PARAMETERS):
        value = body.get(name)
        integer = name in INTEGER_PARAMETERS
        valid = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if value is None or valid:
            continue
        kind = "integer" if integer else "number"
        if fake.quirks.validation_status == 500:
            raise ApiError(
                500,
                f"[{{'type': '{'int' if integer else 'float'}_parsing', 'loc': ('body', "
                f"'{name}'), 'msg': 'Input should be a valid {kind}, unable to parse string as "
                f"{'an' if integer else 'a'} {kind}', 'input': {value!r}}}]",
                error_type="internal_server_error",
            )
        raise ApiError(
            400,
            f"Invalid type for '{name}': expected {'an' if integer else 'a'} {kind}, "
            f"but got {type(value).__name__} instead.",
            param=name,
            code="invalid_type",
        )


class ChatCompletion:
    def __init__(self, fake: FakeOpenAI, model: str, body: JsonDict) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise missing("messages")
        check_parameters(fake, body)
        user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        prompt = text_of(user[-1].get("content")) if user else ""
        self.fake = fake
        self.model = model
        self.body = body
        self.id = new_id("chatcmpl-")
        self.created = int(time.time())
        self.prompt_tokens = sum(
            len(pieces_of(text_of(m.get("content")))) for m in messages if isinstance(m, dict)
        )
        self.outcome: ScriptedOutcome | None = fake.take_outcome(
            {Outcome.REFUSAL, Outcome.CONTENT_FILTER, Outcome.BROKEN_STREAM, Outcome.TOOL_CALLS}
        )
        kind = self.outcome.outcome if self.outcome is not None else None
        self.tool_calls = [
            (new_id("call_"), name, arguments)
            for name, arguments in (self.outcome.tool_calls if self.outcome is not None else ())
        ]
        self.refusal = kind is Outcome.REFUSAL
        self.broken = kind is Outcome.BROKEN_STREAM
        text = self.outcome.text if self.outcome is not None and self.refusal else None
        self.pieces = pieces_of(text or fake.reply_for(prompt))
        self.finish_reason = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if kind is Outcome.CONTENT_FILTER:
            self.pieces = self.pieces[: len(self.pieces) // 2]
            self.finish_reason = "content_filter"
        elif self.tool_calls:
            self.pieces = [piece for _, _, args in self.tool_calls for piece in _cut(args)]
            self.finish_reason = "tool_calls"
        elif isinstance(limit, int) and 0 < limit < len(self.pieces):
            self.pieces = self.pieces[:limit]
            self.finish_reason = "length"
        context = fake.quirks.context_length
        wanted = self.prompt_tokens + (limit if isinstance(limit, int) else 0)
        self.overflow = context is not None and wanted > context

    def _overflow_error(self) -> ApiError:
        limit = self.body.get("max_completion_tokens") or self.body.get("max_tokens") or 0
        return ApiError(
            400,
            f"This model's maximum context length is {self.fake.quirks.context_length} tokens. "
            f"However, you requested {self.prompt_tokens + limit} tokens ({self.prompt_tokens} "
            f"in the messages, {limit} in the completion). Please reduce the length of the "
            "messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )

    def _usage(self) -> JsonDict:
        return completion_usage(self.prompt_tokens, len(self.pieces))

    def whole(self) -> JsonDict:
        if self.overflow:
            raise self._overflow_error()
        text = "".join(self.pieces)
        message: JsonDict = {
            "role": "assistant",
            "content": None if self.refusal or self.tool_calls else text,
            "refusal": text if self.refusal else None,
            "annotations": [],
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in self.tool_calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self._usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def _chunk(self, delta: JsonDict, finish_reason: str | None = None) -> JsonDict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def _tool_call_chunks(self) -> list[JsonDict]:
        chunks = []
        for index, (call_id, name, arguments) in enumerate(self.tool_calls):
            function = {"name": name, "arguments": ""}
            head = {"index": index, "id": call_id, "type": "function", "function": function}
            chunks.append(self._chunk({"tool_calls": [head]}))
            for piece in _cut(arguments):
                delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                chunks.append(self._chunk(delta))
        return chunks

    def _chunks(self) -> list[JsonDict]:
        if self.tool_calls:
            first = {"role": "assistant", "content": None, "refusal": None}
            last = self._chunk({}, self.finish_reason)
            return [self._chunk(first), *self._tool_call_chunks(), last]
        field = "refusal" if self.refusal else "content"
        first = {"role": "assistant", "content": None if self.refusal else "", "refusal": None}
        first[field] = ""
        middle = [self._chunk({field: piece}) for piece in self.pieces]
        return [self._chunk(first), *middle, self._chunk({}, self.finish_reason)]

    async def stream(self) -> AsyncIterator[bytes]:
        if self.overflow:
            return  # llama-cpp-python fails inside the stream: a 200 with nothing in it
        quirks = self.fake.quirks
        include_usage = quirks.usage and bool(
            (self.body.get("stream_options") or {}).get("include_usage")
        )
        epoch = self.fake.request_epoch
        for index, chunk in enumerate(self._chunks()):
            if self.broken and self.outcome is not None and index == self.outcome.after_chunks:
                raise StreamBrokenError(f"stream {self.id} broken after {index} chunks")
            if index:
                await asyncio.sleep(self.fake.chunk_delay_s)
            if include_usage:
                chunk["usage"] = None
            yield _sse(chunk)
            if quirks.interrupt_requests and self.fake.request_epoch != epoch:
                yield _sse("[DONE]")  # another request arrived: the stream ends here
                return
        if include_usage:
            last: dict[str, Any] = self._chunk({})
            last["choices"] = None if self.fake.usage_chunk_choices == "null" else []
            last["usage"] = self._usage()
            yield _sse(last)
        yield _sse("[DONE]")


def _cut(arguments: str, size: int = 8) -> list[str]:
    """Tool-call arguments in the short pieces a server streams them in."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def check_model(fake: FakeOpenAI, model: Any) -> str:
    if fake.quirks.echo_model:
        return str(model or fake.models[0])
    if not model:
        raise missing("model")
    if model not in fake.models:
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return str(model)
