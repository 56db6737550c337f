"""The fake ComfyUI's HTTP routes and WebSocket, served at ``/`` and (like ComfyUI) ``/api``."""

from __future__ import annotations

import asyncio
import json
import platform
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from emp_queue.testing.fakes.comfyui_graph import NODE_CATALOGUE, PromptValidationError, object_info
from emp_queue.testing.fakes.comfyui_run import ClientSocket, CloseSocket

if TYPE_CHECKING:
    from emp_queue.testing.fakes.comfyui import FakeComfyUI

_GIB = 1024**3
_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake received (WebSocket handshakes included), for tests to inspect."""

    method: str  # "WS" for a WebSocket handshake
    path: str
    authorization: str | None


class _Gate:
    """Records each request, then plays the proxy in front of ComfyUI: auth, refused upgrades.

    A WebSocket closed before it is accepted makes the server answer the handshake with 403.
    """

    def __init__(self, app: ASGIApp, fake: FakeComfyUI) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        socket = scope["type"] == "websocket"
        authorization = Headers(scope=scope).get("authorization")
        method = "WS" if socket else str(scope["method"])
        self.fake.request_log.append(RequestRecord(method, str(scope["path"]), authorization))
        required = self.fake.required_authorization
        allowed = required is None or authorization == required
        if socket and (not allowed or self.fake.refuse_sockets):
            await WebSocketClose(_POLICY_VIOLATION)(scope, receive, send)
        elif not allowed:
            body = {"error": "authorization required"}
            await JSONResponse(body, status_code=401)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def _bad_request(kind: str, message: str) -> JSONResponse:
    error = {"type": kind, "message": message, "details": message, "extra_info": {}}
    return JSONResponse({"error": error, "node_errors": {}}, status_code=400)


def _devices(fake: FakeComfyUI) -> list[dict[str, Any]]:
    if fake.device == "cpu":  # as ComfyUI 0.27 reports it with --cpu: the RAM, no GPU
        return [
            {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": 64 * _GIB,
                "vram_free": 48 * _GIB,
                "torch_vram_total": 64 * _GIB,
                "torch_vram_free": 48 * _GIB,
            }
        ]
    return [
        {
            "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": 24 * _GIB,
            "vram_free": 20 * _GIB,
            "torch_vram_total": 2 * _GIB,
            "torch_vram_free": _GIB,
        }
    ]


def _system_stats(fake: FakeComfyUI) -> dict[str, Any]:
    return {
        "system": {
            "os": "posix",
            "ram_total": 64 * _GIB,
            "ram_free": 48 * _GIB,
            "comfyui_version": fake.version,
            "python_version": platform.python_version(),
            "pytorch_version": "2.7.1+cu128",
            "embedded_python": False,
            "argv": ["main.py"],
        },
        "devices": _devices(fake),
    }


def _prompt_routes(router: APIRouter, fake: FakeComfyUI) -> None:
    @router.post("/prompt")
    async def post_prompt(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except json.JSONDecodeError:
            return _bad_request("invalid_json", "the request body is not JSON")
        if not isinstance(body, dict) or "prompt" not in body:
            return _bad_request("no_prompt", "No prompt provided")
        try:
            accepted = await fake.submit(
                body["prompt"],
                body.get("client_id"),
                body.get("prompt_id"),
                front=bool(body.get("front")),
            )
        except PromptValidationError as rejected:
            return JSONResponse(rejected.body, status_code=400)
        return JSONResponse(accepted)

    @router.get("/prompt")
    async def get_prompt() -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": fake.queue_remaining()}}

    @router.get("/queue")
    async def get_queue() -> dict[str, Any]:
        return fake.queue()

    @router.post("/queue")
    async def post_queue(request: Request) -> Response:
        body = await _json_body(request)
        if body.get("clear"):
            fake.delete_pending(None)
        if isinstance(body.get("delete"), list):
            fake.delete_pending([str(i) for i in body["delete"]])
        return Response(status_code=200)

    @router.post("/interrupt")
    async def post_interrupt(request: Request) -> Response:
        body = await _json_body(request)
        fake.interrupt(body.get("prompt_id") if isinstance(body, dict) else None)
        return Response(status_code=200)

    @router.post("/free")
    async def post_free(request: Request) -> Response:
        # ComfyUI: unload_models defaults to free_memory; the reply is an empty 200.
        body = await _json_body(request)
        body = body if isinstance(body, dict) else {}
        free_memory = bool(body.get("free_memory", False))
        fake.free(bool(body.get("unload_models", free_memory)), free_memory)
        return Response(status_code=200)


def _history_routes(router: APIRouter, fake: FakeComfyUI) -> None:
    @router.get("/history")
    async def get_history(max_items: int | None = None) -> dict[str, Any]:
        items = list(fake.history.items())
        return dict(items[-max_items:] if max_items else items)

    @router.get("/history/{prompt_id}")
    async def get_history_item(prompt_id: str) -> dict[str, Any]:
        # Unknown and still-running prompts both answer {}, as ComfyUI does.
        entry = fake.history.get(prompt_id)
        return {prompt_id: entry} if entry is not None else {}

    @router.post("/history")
    async def post_history(request: Request) -> Response:
        body = await _json_body(request)
        if body.get("clear"):
            fake.history.clear()
        for prompt_id in body.get("delete") or []:
            fake.history.pop(str(prompt_id), None)
        return Response(status_code=200)


def _file_routes(router: APIRouter, fake: FakeComfyUI) -> None:
    @router.get("/view")
    async def view(filename: str, subfolder: str = "", type: str = "output") -> Response:
        if ".." in filename or ".." in subfolder or filename.startswith("/"):
            return Response(status_code=400)
        data = fake.files.get((type, subfolder, filename))
        if data is None:
            return Response(status_code=404)
        headers = {"Content-Disposition": f'filename="{filename}"'}
        return Response(data, media_type="image/png", headers=headers)

    @router.post("/upload/image")
    async def upload_image(request: Request) -> Response:
        async with request.form() as form:
            image = form.get("image")
            if not isinstance(image, UploadFile) or not image.filename:
                return Response(status_code=400)
            kind = str(form.get("type") or "input")
            subfolder = str(form.get("subfolder") or "")
            overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
            data = await image.read()
        name = fake.store_upload(data, image.filename, kind, subfolder, overwrite)
        return JSONResponse({"name": name, "subfolder": subfolder, "type": kind})


def _discovery_routes(router: APIRouter, fake: FakeComfyUI) -> None:
    @router.get("/object_info")
    async def get_object_info() -> dict[str, Any]:
        return object_info(fake.model_choices())

    @router.get("/object_info/{node_class}")
    async def get_node_info(node_class: str) -> dict[str, Any]:
        if node_class not in NODE_CATALOGUE:
            return {}
        return {node_class: object_info(fake.model_choices())[node_class]}

    @router.get("/models")
    async def get_model_folders() -> list[str]:
        return sorted(fake.model_folders())

    @router.get("/models/{folder}")
    async def get_models(folder: str) -> Response:
        folders = fake.model_folders()
        if folder not in folders:
            return Response(status_code=404)
        return JSONResponse(folders[folder])

    @router.get("/system_stats")
    async def get_system_stats() -> dict[str, Any]:
        return _system_stats(fake)


async def _watch_for_close(websocket: WebSocket, client: ClientSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
    client.outbox.put_nowait(None)


async def _pump(websocket: WebSocket, client: ClientSocket) -> None:
    while (frame := await client.outbox.get()) is not None:
        if isinstance(frame, CloseSocket):
            await websocket.close(frame.code)
            return
        if isinstance(frame, bytes):
            await websocket.send_bytes(frame)
        else:
            await websocket.send_text(frame)


def _socket_route(router: APIRouter, fake: FakeComfyUI) -> None:
    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        client = fake.attach(websocket.query_params.get("clientId") or uuid.uuid4().hex)
        watcher = asyncio.create_task(_watch_for_close(websocket, client))
        try:
            await _pump(websocket, client)
        except WebSocketDisconnect:
            pass  # the client went away while we were sending; the watcher saw it too
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            fake.detach(client)


def add_comfyui_routes(app: FastAPI, fake: FakeComfyUI) -> None:
    router = APIRouter()
    for add in (_prompt_routes, _history_routes, _file_routes, _discovery_routes, _socket_route):
        add(router, fake)
    app.include_router(router)
    app.include_router(router, prefix="/api")
    app.add_middleware(_Gate, fake=fake)
