"""``openai`` chat: ``POST /chat/completions`` streamed over SSE, assembled into one result.

The stream is always requested with ``stream_options.include_usage`` so the result carries
token usage; the usage chunk's ``choices`` may be ``[]`` (OpenAI) or ``null`` (some compatible
servers). Tool calls arrive in pieces merged by ``index``. A stream that stops before
``data: [DONE]`` lost its end (and its usage): a service fault. ``finish_reason:
content_filter`` and a refusal are job faults: the same request would be refused again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from httpx_sse import EventSource, SSEError

from emp_queue.connectors.base import RunningJob, job_fault, service_fault
from emp_queue.connectors.openai_http import OpenAIHttp, decode_event, stream_error
from emp_queue.connectors.outputs import place
from emp_queue.connectors.progress import ProgressGauge, token_fraction

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


async def run_chat(
    http: OpenAIHttp, job: RunningJob, body: dict[str, Any], *, inline_max_bytes: int
) -> dict[str, Any]:
    options = body.get("stream_options")
    request = {
        **body,
        "stream": True,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }
    limit = _token_limit(body)
    gauge = ProgressGauge(job)
    await gauge.report(0.0, f"waiting for {body.get('model')}")
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
    first = stream.check()
    await gauge.done(f"{stream.chunks} tokens")
    result: dict[str, Any] = {"model": stream.model, **first.result(), "usage": stream.usage}
    if len(stream.choices) > 1:
        result["choices"] = [stream.choices[i].result() for i in sorted(stream.choices)]
    await place(result, "text", result.pop("text"), job, max_bytes=inline_max_bytes)
    return result
