"""The fake Ollama's routes: NDJSON streams with errors in-band, as Ollama sends them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from emp_queue.testing.fakes.ollama_protocol import (
    Generation,
    JsonDict,
    OllamaModel,
    embedding_of,
    qualified,
    timestamp,
    tokens_of,
)

if TYPE_CHECKING:
    from emp_queue.testing.fakes.ollama import FakeOllama

NDJSON = "application/x-ndjson"
TEMPLATE_LAYER_BYTES = 1_192
PULL_PROGRESS_LINES = 4


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = JSONResponse({"error": message}, status_code=status)


def _line(obj: JsonDict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


async def _body(fake: FakeOllama, request: Request) -> JsonDict:
    if (failure := fake.take_http_failure()) is not None:
        raise _RequestError(failure.status, failure.message)
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as error:
        raise _RequestError(400, f"invalid character in request body: {error}") from error
    if not isinstance(body, dict):
        raise _RequestError(400, "json: cannot unmarshal into Go value of type api.Request")
    return body


def _model(fake: FakeOllama, body: JsonDict) -> OllamaModel:
    name = body.get("model")
    if not name:
        raise _RequestError(400, "model is required")
    model = fake.find_model(str(name))
    if model is None:
        raise _RequestError(404, f'model "{name}" not found, try pulling it first')
    return model


class _Reply:
    """One generate/chat reply, streamed or whole, recorded in ``fake.generations``."""

    def __init__(
        self, fake: FakeOllama, endpoint: str, model: OllamaModel, body: JsonDict, prompt: str
    ) -> None:
        self.fake = fake
        self.endpoint = endpoint
        self.model = model
        self.prompt_tokens = len(tokens_of(prompt))
        tokens = tokens_of(fake.reply_for(prompt))
        limit = int((body.get("options") or {}).get("num_predict", -1))
        self.done_reason = "length" if 0 <= limit < len(tokens) else "stop"
        self.tokens = tokens[:limit] if 0 <= limit < len(tokens) else tokens
        self.failure = fake.take_stream_failure()
        self.generation = Generation(endpoint, model.name, len(self.tokens))
        fake.generations.append(self.generation)
        self.started = time.perf_counter()
        self.load_s = 0.0

    def chunk(self, piece: str) -> JsonDict:
        head: JsonDict = {"model": self.model.name, "created_at": timestamp()}
        if self.endpoint == "chat":
            return {**head, "message": {"role": "assistant", "content": piece}, "done": False}
        return {**head, "response": piece, "done": False}

    def final(self, text: str) -> JsonDict:
        elapsed = time.perf_counter() - self.started
        last = self.chunk(text)
        last.update(
            done=True,
            done_reason=self.done_reason,
            total_duration=_ns(elapsed),
            load_duration=_ns(self.load_s),
            prompt_eval_count=self.prompt_tokens,
            prompt_eval_duration=_ns(elapsed / 10),
            eval_count=self.generation.tokens_sent,
            eval_duration=_ns(elapsed - self.load_s),
        )
        if self.endpoint == "generate":
            last["context"] = list(range(self.prompt_tokens + self.generation.tokens_sent))
        return last

    async def _tokens(self) -> AsyncIterator[str]:
        for index, piece in enumerate(self.tokens):
            if self.failure is not None and index == self.failure[0]:
                return
            await asyncio.sleep(self.fake.token_delay_s)
            yield piece
            self.generation.tokens_sent += 1

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._tokens():
                yield _line(self.chunk(piece))
            if self.failure is not None:
                yield _line({"error": self.failure[1]})
            else:
                yield _line(self.final(""))
                self.generation.done = True
        except asyncio.CancelledError:
            self.generation.disconnected = True  # the client closed the connection
            raise
        finally:
            self.generation.stopped.set()

    async def whole(self, request: Request) -> Response:
        text = ""
        try:
            async for piece in self._tokens():
                text += piece
                if await request.is_disconnected():
                    self.generation.disconnected = True
                    return Response(status_code=499)
        finally:
            self.generation.stopped.set()
        if self.failure is not None:
            return JSONResponse({"error": self.failure[1]}, status_code=500)
        self.generation.done = True
        final = self.final("")
        if self.endpoint == "chat":
            final["message"]["content"] = text
        else:
            final["response"] = text
        return JSONResponse(final)

    async def respond(self, request: Request, body: JsonDict) -> Response:
        self.load_s = await self.fake.load(self.model, body.get("keep_alive"))
        if body.get("stream", True) is False:
            return await self.whole(request)
        return StreamingResponse(self.stream(), media_type=NDJSON)


Handler = Callable[[Request, JsonDict], Awaitable[Response]]


def _handler(fake: FakeOllama, run: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            body = await _body(fake, request)
            return await run(request, body)
        except _RequestError as bad:
            return bad.response

    return handle


def _generation_routes(router: APIRouter, fake: FakeOllama) -> None:
    async def generate(request: Request, body: JsonDict) -> Response:
        model = _model(fake, body)
        prompt = f"{body.get('system') or ''}{body.get('prompt') or ''}"
        if not prompt and not body.get("images"):
            await fake.load(model, body.get("keep_alive"))
            return JSONResponse(
                {
                    "model": model.name,
                    "created_at": timestamp(),
                    "response": "",
                    "done": True,
                    "done_reason": "load",
                }
            )
        return await _Reply(fake, "generate", model, body, prompt).respond(request, body)

    async def chat(request: Request, body: JsonDict) -> Response:
        model = _model(fake, body)
        messages = body.get("messages") or []
        if not messages:
            await fake.load(model, body.get("keep_alive"))
            return JSONResponse(
                {
                    "model": model.name,
                    "created_at": timestamp(),
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "load",
                }
            )
        prompt = " ".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        return await _Reply(fake, "chat", model, body, prompt).respond(request, body)

    async def embed(request: Request, body: JsonDict) -> Response:
        model = _model(fake, body)
        started = time.perf_counter()
        load_s = await fake.load(model, body.get("keep_alive"))
        given = body.get("input", [])
        texts = [given] if isinstance(given, str) else [str(t) for t in given]
        vectors = [embedding_of(t, fake.embedding_dimensions) for t in texts]
        return JSONResponse(
            {
                "model": model.name,
                "embeddings": vectors,
                "total_duration": _ns(time.perf_counter() - started),
                "load_duration": _ns(load_s),
                "prompt_eval_count": sum(len(tokens_of(t)) for t in texts),
            }
        )

    router.add_api_route("/generate", _handler(fake, generate), methods=["POST"])
    router.add_api_route("/chat", _handler(fake, chat), methods=["POST"])
    router.add_api_route("/embed", _handler(fake, embed), methods=["POST"])


async def _pull_lines(fake: FakeOllama, name: str) -> AsyncIterator[JsonDict]:
    yield {"status": "pulling manifest"}
    source = fake.registry.get(name)
    if source is None:
        yield {"error": "pull model manifest: file does not exist"}
        return
    layers = [
        (f"sha256:{source.digest}", source.size - TEMPLATE_LAYER_BYTES),
        (f"sha256:{source.digest[::-1]}", TEMPLATE_LAYER_BYTES),
    ]
    for digest, total in layers:
        # Bytes fetched by an earlier, interrupted pull are not fetched again.
        completed = fake.pulled_bytes.get(digest, 0)
        status = f"pulling {digest[7:19]}"
        yield {"status": status, "digest": digest, "total": total, "completed": completed}
        while completed < total:
            await asyncio.sleep(fake.pull_delay_s)
            completed = min(total, completed + -(-total // PULL_PROGRESS_LINES))
            fake.pulled_bytes[digest] = completed
            yield {"status": status, "digest": digest, "total": total, "completed": completed}
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    fake.models[source.name] = source
    yield {"status": "success"}


def _model_routes(router: APIRouter, fake: FakeOllama) -> None:
    async def pull(request: Request, body: JsonDict) -> Response:
        name = qualified(str(body.get("model") or body.get("name") or ""))
        lines = _pull_lines(fake, name)
        if body.get("stream", True) is not False:
            return StreamingResponse((_line(obj) async for obj in lines), media_type=NDJSON)
        async for obj in lines:
            if "error" in obj:
                return JSONResponse(obj, status_code=500)
        return JSONResponse({"status": "success"})

    async def delete(request: Request, body: JsonDict) -> Response:
        # Ollama binds the body first: an empty one is "missing request body".
        if not await request.body():
            raise _RequestError(400, "missing request body")
        wanted = str(body.get("model") or body.get("name") or "")
        if not wanted:
            raise _RequestError(400, f'name "{wanted}" is invalid')
        if fake.delete(wanted) is None:
            raise _RequestError(404, f"model '{wanted}' not found")
        return Response(status_code=200)  # the real server sends no body

    router.add_api_route("/pull", _handler(fake, pull), methods=["POST"])
    router.add_api_route("/delete", _handler(fake, delete), methods=["DELETE"])

    @router.get("/tags")
    async def tags() -> JsonDict:
        return {"models": fake.installed_models()}

    @router.get("/ps")
    async def ps() -> JsonDict:
        return {"models": fake.running_models()}

    @router.get("/version")
    async def version() -> JsonDict:
        return {"version": fake.version}


def add_ollama_routes(app: FastAPI, fake: FakeOllama) -> None:
    router = APIRouter(prefix="/api")
    _generation_routes(router, fake)
    _model_routes(router, fake)
    app.include_router(router)

    @app.get("/")
    async def root() -> PlainTextResponse:
        return PlainTextResponse("Ollama is running")
