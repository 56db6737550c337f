"""A fake OpenAI-compatible server: chat completions (SSE), images, the Responses API.

Streams follow OpenAI's shapes: a first chunk with ``delta.role``, content pieces, a last chunk
with ``finish_reason``, with ``stream_options.include_usage`` a usage chunk whose ``choices``
is ``[]`` (OpenAI) or ``null`` (some compatible servers: ``usage_chunk_choices="null"``), then
``data: [DONE]``.

Failure modes for tests: :meth:`FakeOpenAI.rate_limit_next` (429 with ``retry-after``),
:meth:`FakeOpenAI.fail_next` (any HTTP error), and for the next generation request
:meth:`FakeOpenAI.refuse_next`, :meth:`FakeOpenAI.content_filter_next`,
:meth:`FakeOpenAI.break_stream_next` (the connection drops mid-stream: no usage, no [DONE]),
:meth:`FakeOpenAI.call_tools_next` (a ``tool_calls`` answer, streamed in pieces) and
:meth:`FakeOpenAI.fail_next_response` (a background response ends ``failed``). With ``api_key``
set, requests must carry ``Authorization: Bearer <api_key>``.

:meth:`FakeOpenAI.llamacpp` is the profile of llama.cpp's server (llama-cpp-python 0.3 with
one GGUF model), which departs from OpenAI in ways a connector must survive
(:class:`ServerQuirks`): a request arriving while a stream runs ends that stream with
``data: [DONE]`` and no ``finish_reason``; bad parameters answer 500; no usage even when
asked; the one model's id is a file path, any requested name runs it and is echoed back; a
prompt past the context length streams an empty 200 (and answers 400
``context_length_exceeded`` when not streamed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI

from emp_queue.media import colour_for, solid_png
from emp_queue.testing.fakes.openai_app import add_openai_routes
from emp_queue.testing.fakes.openai_protocol import (
    HttpFailure,
    JsonDict,
    Outcome,
    ScriptedOutcome,
)
from emp_queue.testing.fakes.server import FakeService

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4.1", "o4-mini", "dall-e-2", "dall-e-3", "gpt-image-1")
DEFAULT_REFUSAL = "I'm sorry, but I can't assist with that request."
LLAMACPP_MODEL = "/models/gemma-3-270m-it-Q8_0.gguf"


@dataclass(frozen=True)
class ServerQuirks:
    """How a compatible server departs from OpenAI; the defaults are OpenAI's own behaviour."""

    interrupt_requests: bool = False
    """A request to ``/v1`` ends every running stream with ``[DONE]`` and no finish reason."""
    context_length: int | None = None
    """Prompt plus ``max_tokens`` beyond this: an empty 200 stream, or 400 when not streamed."""
    usage: bool = True
    """Sends a usage chunk when ``stream_options.include_usage`` asks for one."""
    validation_status: int = 400
    """The status of an answer to a parameter of the wrong type (llama-cpp-python: 500)."""
    echo_model: bool = False
    """Any model name runs the server's one model, and the name asked for is echoed back."""


LLAMACPP_QUIRKS = ServerQuirks(
    interrupt_requests=True, context_length=512, usage=False, validation_status=500, echo_model=True
)


class FakeOpenAI(FakeService):
    """State and control of the fake; ``app()`` serves it, ``running()`` runs it on loopback."""

    service_name = "openai"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        chunk_delay_s: float = 0.0,
        response_duration_s: float = 0.0,
        reply: str | None = None,
        usage_chunk_choices: Literal["empty", "null"] = "empty",
        quirks: ServerQuirks = ServerQuirks(),
    ) -> None:
        super().__init__()
        self.quirks = quirks
        self.request_epoch = 0  # one more per /v1 request: a running stream sees it moved on
        self.api_key = api_key
        self.models = list(models)
        self.chunk_delay_s = chunk_delay_s
        self.response_duration_s = response_duration_s  # how long a background response runs
        self.reply = reply  # None: a reply derived from the last user message
        self.usage_chunk_choices = usage_chunk_choices
        self.responses: dict[str, JsonDict] = {}
        self.files: dict[str, bytes] = {}  # image URLs point here (/files/{name})
        self.requests_served = 0
        self._failures: list[HttpFailure] = []
        self._outcomes: list[ScriptedOutcome] = []
        self._response_tasks: dict[str, asyncio.Task[None]] = {}

    def add_routes(self, app: FastAPI) -> None:
        add_openai_routes(app, self)

    @classmethod
    def llamacpp(cls, *, model: str = LLAMACPP_MODEL, **options: Any) -> FakeOpenAI:
        """The llama.cpp server profile (see :data:`LLAMACPP_QUIRKS`) serving one GGUF file."""
        return cls(models=[model], quirks=LLAMACPP_QUIRKS, **options)

    # -- control API ----------------------------------------------------------------------

    def rate_limit_next(self, count: int = 1, retry_after_s: int = 1) -> None:
        """Answer the next ``count`` requests 429 with ``retry-after: <retry_after_s>``."""
        message = (
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
            f"Please try again in {retry_after_s}s."
        )
        headers = (
            ("retry-after", str(retry_after_s)),
            ("retry-after-ms", str(retry_after_s * 1000)),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", f"{retry_after_s}s"),
        )
        failure = HttpFailure(429, message, "requests", "rate_limit_exceeded", headers)
        self._failures.extend([failure] * count)

    def fail_next(
        self,
        status: int,
        message: str = "The server had an error while processing your request.",
        count: int = 1,
        *,
        error_type: str = "server_error",
        code: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` and an OpenAI error body."""
        self._failures.extend([HttpFailure(status, message, error_type, code)] * count)

    def refuse_next(self, refusal: str = DEFAULT_REFUSAL) -> None:
        """The next generation is a refusal (``message.refusal``; images: a policy 400)."""
        self._outcomes.append(ScriptedOutcome(Outcome.REFUSAL, refusal))

    def content_filter_next(self) -> None:
        """The next generation stops with ``finish_reason: content_filter``."""
        self._outcomes.append(ScriptedOutcome(Outcome.CONTENT_FILTER))

    def break_stream_next(self, after_chunks: int = 2) -> None:
        """The next stream drops the connection after ``after_chunks`` chunks."""
        self._outcomes.append(ScriptedOutcome(Outcome.BROKEN_STREAM, after_chunks=after_chunks))

    def call_tools_next(self, *calls: tuple[str, str]) -> None:
        """The next chat completion calls these tools (``(name, JSON arguments)`` each); a
        stream sends each call's ``id`` and name first, then its arguments in pieces."""
        self._outcomes.append(ScriptedOutcome(Outcome.TOOL_CALLS, tool_calls=calls))

    def fail_next_response(self, message: str = "The model failed to generate a response.") -> None:
        """The next Responses API response ends with ``status: failed``."""
        self._outcomes.append(ScriptedOutcome(Outcome.FAILED, message))

    # -- protocol operations (the routes call these) --------------------------------------

    def take_failure(self) -> HttpFailure | None:
        self.requests_served += 1
        self.request_epoch += 1
        return self._failures.pop(0) if self._failures else None

    def take_outcome(self, kinds: set[Outcome]) -> ScriptedOutcome | None:
        """The first scripted outcome of one of ``kinds``, removed from the script."""
        for scripted in self._outcomes:
            if scripted.outcome in kinds:
                self._outcomes.remove(scripted)
                return scripted
        return None

    def reply_for(self, prompt: str) -> str:
        return self.reply if self.reply is not None else f"You said: {prompt}"

    def store_image(self, seed: str, width: int, height: int) -> tuple[str, bytes]:
        png = solid_png(width, height, colour_for(seed))
        name = f"img-{uuid.uuid4().hex}.png"
        self.files[name] = png
        return name, png

    def start_background(self, response: JsonDict, finish: JsonDict) -> None:
        """Run a background response: queued, in_progress, then ``finish`` after a while."""
        self.responses[response["id"]] = response
        task = self.spawn(self._run_background(response, finish))
        self._response_tasks[response["id"]] = task
        task.add_done_callback(lambda _: self._response_tasks.pop(response["id"], None))

    async def _run_background(self, response: JsonDict, finish: JsonDict) -> None:
        await asyncio.sleep(0)
        response["status"] = "in_progress"
        await asyncio.sleep(self.response_duration_s)
        response.update(finish)
        response["completed_at"] = int(time.time())

    def cancel_response(self, response_id: str) -> None:
        task = self._response_tasks.pop(response_id, None)
        if task is not None:
            task.cancel()
        self.responses[response_id]["status"] = "cancelled"
