"""``openai`` chat: ``POST /chat/completions`` streamed over SSE, assembled into one result.

The stream is always requested with ``stream_options.include_usage`` so the result carries
token usage; the usage chunk's ``choices`` may be ``[]`` (OpenAI) or ``null`` (some compatible
servers). Tool calls arrive in pieces merged by ``index``. A stream that stops before
``data: [DONE]`` lost its end (and its usage): a service fault. So is a stream that ends with
``[DONE]`` but no ``finish_reason``: llama.cpp's server cuts a running stream that way when
another request arrives, and recording its partial text as a completion would be a lie.
An empty stream (llama.cpp's answer to a prompt past the context window) is asked once more
without streaming, which makes the server say why; a reason that blames the request is a job
fault. ``finish_reason: content_filter`` and a refusal are job faults: the same request would
be refused again. ``"stream": false`` in the payload is honoured (one JSON answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from httpx_sse import EventSource, SSEError

from emp_queue.connectors.base import RunningJob, job_fault, service_fault
from emp_queue.connectors.openai_http import OpenAIHttp, decode_event, stream_error
from emp_queue.connectors.outputs import place
from emp_queue.connectors.progress import ProgressGauge, token_fraction
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass

DONE = "[DONE]"


@dataclass
class ChoiceState:
    """One choice's deltas so far."""

    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    def add(self, delta: dict[str, Any]) -> bool:
        """Merge one delta; ``True`` when it carried any generated output."""
        content, refusal = delta.get("content"), delta.get("refusal")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        for pieces, piece in (
            (self.content, content),
            (self.refusal, refusal),
            (self.reasoning, reasoning),
        ):
            if piece:
                pieces.append(str(piece))
        calls = delta.get("tool_calls") or []
        for piece in calls:
            self._merge_tool_call(piece)
        return bool(content or refusal or reasoning or calls)

    def _merge_tool_call(self, piece: dict[str, Any]) -> None:
        index = int(piece.get("index", len(self.tool_calls)))
        call = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if piece.get("id"):
            call["id"] = piece["id"]
        if piece.get("type"):
            call["type"] = piece["type"]
        function = piece.get("function") or {}
        if function.get("name"):
            call["function"]["name"] = function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]

    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "text": "".join(self.content),
            "finish_reason": self.finish_reason,
        }
        if self.tool_calls:
            result["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.reasoning:
            result["reasoning"] = "".join(self.reasoning)
        return result


@dataclass
class ChatStream:
    """A chat completion assembled from its chunks."""

    model: str | None = None
    choices: dict[int, ChoiceState] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    chunks: int = 0
    done: bool = False

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("error"):
            raise stream_error(chunk["error"])
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        produced = False
        for choice in chunk.get("choices") or []:
            state = self.choices.setdefault(int(choice.get("index") or 0), ChoiceState())
            produced = state.add(choice.get("delta") or {}) or produced
            state.finish_reason = choice.get("finish_reason") or state.finish_reason
        self.chunks += produced

    def add_whole(self, answer: dict[str, Any]) -> None:
        """A non-streamed ``chat.completion``: each choice's ``message`` taken as one delta."""
        self.model = answer.get("model") or self.model
        self.usage = answer.get("usage") or self.usage
        for choice in answer.get("choices") or []:
            state = self.choices.setdefault(int(choice.get("index") or 0), ChoiceState())
            message = dict(choice.get("message") or {})
            calls = message.get("tool_calls") or []
            message["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
            self.chunks += state.add(message)
            state.finish_reason = choice.get("finish_reason")
        tokens = (self.usage or {}).get("completion_tokens")
        self.chunks = tokens if isinstance(tokens, int) else self.chunks
        self.done = True

    def check(self) -> ChoiceState:
        """The first choice, once the stream is known complete and acceptable."""
        if not self.done:
            raise service_fault(
                f"the chat stream ended after {self.chunks} chunks without data: [DONE]",
                chunks=self.chunks,
            )
        first = self.choices.get(0)
        if first is None:
            raise service_fault("the chat stream finished without any choice")
        if first.finish_reason is None:
            raise service_fault(
                f"the chat stream ended after {self.chunks} chunks with data: [DONE] but no "
                "finish_reason: the server cut it short (llama.cpp's server does when another "
                "request arrives; see docs/connectors.md)",
                chunks=self.chunks,
            )
        if first.refusal:
            refusal = "".join(first.refusal)
            raise job_fault(f"the model refused: {refusal}", refusal=refusal)
        if first.finish_reason == "content_filter":
            raise job_fault(
                "the output was stopped by the content filter (finish_reason content_filter)",
                finish_reason="content_filter",
            )
        return first


def _token_limit(body: dict[str, Any]) -> int | None:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return limit if isinstance(limit, int) and limit > 0 else None


async def _streamed(http: OpenAIHttp, body: dict[str, Any], gauge: ProgressGauge) -> ChatStream:
    options = body.get("stream_options")
    request = {
        **body,
        "stream": True,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    limit = _token_limit(body)
    stream = ChatStream()
    async with http.stream("chat/completions", request) as response:
        try:
            async for event in EventSource(response).aiter_sse():
                if event.data == DONE:
                    stream.done = True
                    break
                stream.add(decode_event(event.data))
                await gauge.report(token_fraction(stream.chunks, limit), f"{stream.chunks} tokens")
        except SSEError as error:
            raise service_fault(f"the chat answer is not an SSE stream: {error}") from error
    if not stream.done and not stream.choices:
        await _ask_why_empty(http, body)
    return stream


async def _ask_why_empty(http: OpenAIHttp, body: dict[str, Any]) -> None:
    """An empty stream carries no reason; the same request unstreamed (one token) gets one."""
    probe = {**body, "stream": False, "max_tokens": 1}
    probe.pop("stream_options", None)
    probe.pop("max_completion_tokens", None)
    try:
        await http.json("POST", "chat/completions", probe)
    except JobFailedError as error:
        if error.failure_class == FailureClass.JOB_FAULT:
            raise job_fault(
                f"the server sent an empty chat stream; asked without streaming it says: {error}",
                **error.details,
            ) from error


def _model_that_ran(reported: str | None, requested: Any, served: Sequence[str]) -> str | None:
    """A server with one model runs it whatever name was asked for, and some (llama.cpp) echo
    the requested name: the result must name what ran."""
    if len(served) == 1 and reported not in served:
        return served[0]
    return reported or (str(requested) if requested else None)


async def run_chat(
    http: OpenAIHttp,
    job: RunningJob,
    body: dict[str, Any],
    *,
    inline_max_bytes: int,
    served_models: Sequence[str] = (),
    requested_model: str | None = None,
) -> dict[str, Any]:
    gauge = ProgressGauge(job)
    await gauge.report(0.0, f"waiting for {body.get('model')}")
    if body.get("stream") is False:
        stream = ChatStream()
        stream.add_whole(await http.json("POST", "chat/completions", body))
    else:
        stream = await _streamed(http, body, gauge)
    first = stream.check()
    await gauge.done(f"{stream.chunks} tokens")
    requested = requested_model or body.get("model")
    ran = _model_that_ran(stream.model, body.get("model"), served_models)
    result: dict[str, Any] = {"model": ran, **first.result(), "usage": stream.usage}
    if requested and requested != ran:
        result["requested_model"] = requested
    if len(stream.choices) > 1:
        result["choices"] = [stream.choices[i].result() for i in sorted(stream.choices)]
    await place(result, "text", result.pop("text"), job, max_bytes=inline_max_bytes)
    return result
