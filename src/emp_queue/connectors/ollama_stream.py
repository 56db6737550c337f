"""Reading Ollama's NDJSON streams: generation deltas, pull progress, and in-band errors.

Ollama sends HTTP 200 as soon as a stream starts, so a failure after that arrives as a line
``{"error": "..."}``; every line is checked for one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from emp_queue.connectors.base import job_fault, service_fault
from emp_queue.errors import JobFailedError

INPUT_ERROR_MARKERS = ("context length", "does not support", "not supported", "invalid image")
"""Substrings of an in-band error that blame the request (a prompt longer than the context,
images sent to a text-only model...): those are job faults. Anything else in a stream (runner
crashed, CUDA out of memory, model unloaded) is the service's fault and retried elsewhere."""
MISSING_MODEL_MARKERS = ("file does not exist", "not found")
"""Substrings of a pull error meaning the registry has no such model: the job's fault."""
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


async def ndjson(response: httpx.Response, service: str) -> AsyncIterator[dict[str, Any]]:
    """The objects of a streamed NDJSON body, blank lines skipped."""
    async for line in response.aiter_lines():
        if line.strip():
            yield decode_line(line, service)


def decode_line(line: str, service: str) -> dict[str, Any]:
    """One NDJSON line as an object; anything else means the service is not speaking Ollama."""
    try:
        value = json.loads(line)
    except ValueError as error:
        raise service_fault(f"{service} sent a line that is not JSON: {line[:200]!r}") from error
    if not isinstance(value, dict):
        raise service_fault(f"{service} sent a JSON line that is not an object: {line[:200]!r}")
    return value


def error_text(response: httpx.Response) -> str:
    """Ollama's ``{"error": ...}`` answer body, or the start of whatever it sent instead."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("error") if isinstance(body, dict) else body)[:300]


def stream_error(message: str, tokens: int) -> JobFailedError:
    """The failure an in-band ``{"error"}`` line stands for (see :data:`INPUT_ERROR_MARKERS`)."""
    text = f"ollama failed mid-stream after {tokens} tokens: {message}"
    if any(marker in message.lower() for marker in INPUT_ERROR_MARKERS):
        return job_fault(text, tokens=tokens)
    return service_fault(text, tokens=tokens)


class GenerationReply:
    """A generate or chat reply assembled from its stream; Ollama sends one token per line."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.model: str | None = None
        self.pieces: list[str] = []
        self.thinking: list[str] = []
        self.tool_calls: list[Any] = []
        self.tokens = 0
        self.final: dict[str, Any] | None = None

    @staticmethod
    def token_limit(body: dict[str, Any]) -> int | None:
        """``options.num_predict`` when it is a positive limit (-1 and -2 mean none)."""
        options = body.get("options")
        limit = options.get("num_predict") if isinstance(options, dict) else None
        return limit if isinstance(limit, int) and limit > 0 else None

    def add(self, chunk: dict[str, Any]) -> bool:
        """Take one line; ``True`` once it is the ``done`` line."""
        if "error" in chunk:
            raise stream_error(str(chunk["error"]), self.tokens)
        self.model = chunk.get("model", self.model)
        part = (chunk.get("message") or {}) if self.endpoint == "chat" else chunk
        content = part.get("content" if self.endpoint == "chat" else "response")
        thinking = part.get("thinking")
        if content:
            self.pieces.append(str(content))
        if thinking:
            self.thinking.append(str(thinking))
        if content or thinking:
            self.tokens += 1
        self.tool_calls.extend(part.get("tool_calls") or [])
        if chunk.get("done"):
            self.final = chunk
            return True
        return False

    @staticmethod
    def usage(final: dict[str, Any]) -> dict[str, Any]:
        """Ollama's counters, with its nanosecond durations in milliseconds."""
        usage: dict[str, Any] = {
            name: final[name] for name in ("prompt_eval_count", "eval_count") if name in final
        }
        for name in DURATIONS:
            if isinstance(final.get(name), int | float):
                usage[f"{name}_ms"] = round(final[name] / 1e6, 3)
        return usage

    def result(self) -> dict[str, Any]:
        final = self.final or {}
        text = "".join(self.pieces)
        result: dict[str, Any] = {"model": self.model, "done_reason": final.get("done_reason")}
        if self.endpoint == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if self.thinking:
                message["thinking"] = "".join(self.thinking)
            if self.tool_calls:
                message["tool_calls"] = self.tool_calls
            result["message"] = message
        else:
            result["text"] = text
            if self.thinking:
                result["thinking"] = "".join(self.thinking)
        result["usage"] = self.usage(final)
        return result


class PullProgress:
    """``POST /api/pull`` status lines, summed over the layers seen so far."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.status = "pulling manifest"
        self.layers: dict[str, tuple[int, int]] = {}
        self.succeeded = False

    def add(self, line: dict[str, Any]) -> bool:
        """Take one status line; ``True`` once it is ``success``."""
        if "error" in line:
            message = str(line["error"])
            text = f"pulling {self.model!r} failed: {message}"
            if any(marker in message.lower() for marker in MISSING_MODEL_MARKERS):
                raise job_fault(f"{text} (no such model in the registry)", model=self.model)
            raise service_fault(text, model=self.model)
        self.status = str(line.get("status") or self.status)
        digest, total = line.get("digest"), line.get("total")
        if isinstance(digest, str) and isinstance(total, int) and total > 0:
            self.layers[digest] = (int(line.get("completed") or 0), total)
        self.succeeded = self.status == "success"
        return self.succeeded

    @property
    def fraction(self) -> float:
        total = sum(t for _, t in self.layers.values())
        return sum(c for c, _ in self.layers.values()) / total if total else 0.0

    @property
    def message(self) -> str:
        if self.layers and self.status.startswith("pulling "):
            return f"pulling {self.model}: {self.fraction:.0%}"
        return f"{self.model}: {self.status}"
