"""A fake Ollama: generate, chat, embed, pull, delete and the model listings, over real HTTP.

Replies stream as NDJSON token by token (``token_delay_s`` apart) and end with a ``done`` line
carrying ``done_reason`` and the counters and nanosecond durations Ollama reports.

Failure modes for tests: :meth:`FakeOllama.fail_mid_stream` (an ``{"error": ...}`` line after
HTTP 200), :meth:`FakeOllama.fail_next_requests` (an HTTP error such as 503 "server busy"),
unknown models (404), a delete of a loaded model (gone from ``/api/tags``, still running in
``/api/ps`` until it expires, as the real server leaves it; ``ollama rm`` unloads first itself),
and a client that closes the connection: every generation is recorded in
:attr:`FakeOllama.generations`, whose ``stopped`` event fires when it ends for any reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from emp_queue.testing.fakes.ollama_app import add_ollama_routes
from emp_queue.testing.fakes.ollama_protocol import (
    DEFAULT_MODELS,
    DEFAULT_REGISTRY,
    FOREVER,
    Generation,
    HttpFailure,
    JsonDict,
    OllamaModel,
    keep_alive_s,
    qualified,
    timestamp,
)
from emp_queue.testing.fakes.server import FakeService

MID_STREAM_ERROR = "an error was encountered while running the model: CUDA error: out of memory"


class FakeOllama(FakeService):
    """State and control of the fake; ``app()`` serves it, ``running()`` runs it on loopback."""

    service_name = "ollama"

    def __init__(
        self,
        *,
        models: Sequence[OllamaModel] = DEFAULT_MODELS,
        registry: Sequence[OllamaModel] = DEFAULT_REGISTRY,
        token_delay_s: float = 0.0,
        load_delay_s: float = 0.0,
        pull_delay_s: float = 0.0,
        reply: str | None = None,
        vram_bytes: int | None = None,
        embedding_dimensions: int = 8,
        version: str = "0.9.6",
    ) -> None:
        super().__init__()
        self.models = {m.name: m for m in models}
        self.registry = {m.name: m for m in [*models, *registry]}
        self.token_delay_s = token_delay_s
        self.load_delay_s = load_delay_s
        self.pull_delay_s = pull_delay_s
        self.reply = reply  # None: a reply derived from the prompt
        self.vram_bytes = vram_bytes  # None: every model fits in VRAM
        self.embedding_dimensions = embedding_dimensions
        self.version = version
        self.generations: list[Generation] = []
        self.loaded: dict[str, datetime] = {}  # model name -> expires_at
        self.deleted: dict[str, OllamaModel] = {}  # deleted models, kept while still running
        self.pulled_bytes: dict[str, int] = {}  # layer digest -> bytes already downloaded
        self._stream_failures: list[tuple[int, str]] = []
        self._http_failures: list[HttpFailure] = []

    def add_routes(self, app: FastAPI) -> None:
        add_ollama_routes(app, self)

    # -- control API ----------------------------------------------------------------------

    def fail_mid_stream(self, after_tokens: int, message: str = MID_STREAM_ERROR) -> None:
        """The next generation sends ``after_tokens`` tokens, then an ``{"error"}`` line."""
        self._stream_failures.append((after_tokens, message))

    def fail_next_requests(self, status: int, message: str, count: int = 1) -> None:
        """Answer the next ``count`` API requests with ``status`` and ``{"error": message}``."""
        self._http_failures.extend([HttpFailure(status, message)] * count)

    # -- protocol operations (the routes call these) --------------------------------------

    def take_http_failure(self) -> HttpFailure | None:
        return self._http_failures.pop(0) if self._http_failures else None

    def take_stream_failure(self) -> tuple[int, str] | None:
        return self._stream_failures.pop(0) if self._stream_failures else None

    def find_model(self, name: str) -> OllamaModel | None:
        return self.models.get(qualified(name))

    async def load(self, model: OllamaModel, keep_alive: Any) -> float:
        """Load ``model`` if needed and renew its expiry; returns the load duration in seconds."""
        self._expire()
        started = time.perf_counter()
        if model.name not in self.loaded and self.load_delay_s:
            await asyncio.sleep(self.load_delay_s)
        seconds = keep_alive_s(keep_alive)
        lifetime = FOREVER if seconds < 0 else timedelta(seconds=seconds)
        self.loaded[model.name] = datetime.now(UTC) + lifetime
        return time.perf_counter() - started

    def delete(self, name: str) -> OllamaModel | None:
        """``DELETE /api/delete``: the model leaves ``/api/tags``; a running one keeps running
        (``/api/ps``) until it expires. None: no such model."""
        model = self.models.pop(qualified(name), None)
        if model is not None:
            self.deleted[model.name] = model
        return model

    def running_models(self) -> list[JsonDict]:
        """``GET /api/ps``: loaded models; ``size_vram`` below ``size`` means partly on CPU."""
        self._expire()
        listing = []
        for name, expires_at in self.loaded.items():
            model = self.models.get(name) or self.deleted[name]
            in_vram = model.size if self.vram_bytes is None else min(model.size, self.vram_bytes)
            listing.append(
                {
                    "name": name,
                    "model": name,
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details(),
                    "expires_at": timestamp(expires_at),
                    "size_vram": in_vram,
                }
            )
        return listing

    def installed_models(self) -> list[JsonDict]:
        """``GET /api/tags``."""
        return [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": timestamp(),
                "size": m.size,
                "digest": m.digest,
                "details": m.details(),
            }
            for m in self.models.values()
        ]

    def reply_for(self, prompt: str) -> str:
        return self.reply if self.reply is not None else f"You said: {prompt}"

    def _expire(self) -> None:
        now = datetime.now(UTC)
        self.loaded = {name: at for name, at in self.loaded.items() if at > now}
        self.deleted = {name: m for name, m in self.deleted.items() if name in self.loaded}
