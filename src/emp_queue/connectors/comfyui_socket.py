"""The one WebSocket a connector keeps open to its ComfyUI, shared by all its running jobs.

ComfyUI sends a prompt's messages to the socket opened with the ``client_id`` the prompt was
submitted with, and other clients' broadcast messages to every socket. One reader task per
connector reads every frame and hands each JSON message to the job watching its ``prompt_id``;
messages of prompts nobody here watches, ``status`` messages and binary preview frames are
dropped. When the socket drops the reader reconnects with backoff, under the same client id,
and tells every watcher :data:`SocketSignal.RECONNECTED`: messages sent while it was away are
gone, so each job must ask ComfyUI where its prompt is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from emp_queue.connectors.base import ServiceUnavailableError

log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 256 * 1024 * 1024
"""Large enough for a preview frame of a big image or an ``executed`` message with many files."""


@dataclass(frozen=True)
class Message:
    type: str
    data: dict[str, Any]


class SocketSignal(StrEnum):
    RECONNECTED = "reconnected"
    """The socket dropped and is back: messages may have been missed."""
    CLOSED = "closed"
    """The connector closed: no message will come any more."""


SocketEvent = Message | SocketSignal


@dataclass
class PromptWatch:
    """The messages of one prompt, in the order they arrived."""

    prompt_id: str
    events: asyncio.Queue[SocketEvent] = field(default_factory=asyncio.Queue)

    async def next(self, timeout_s: float) -> SocketEvent | None:
        """The next event, or ``None`` after ``timeout_s`` without one."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.events.get()
        except TimeoutError:
            return None


class ComfyUISocket:
    """Owns the socket and its reader task; :meth:`open` once, :meth:`close` at the end."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        open_timeout_s: float,
        backoff_s: float,
        backoff_max_s: float,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.open_timeout_s = open_timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.connections = 0
        self._watches: dict[str, PromptWatch] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def open(self) -> None:
        """Connect; :class:`ServiceUnavailableError` when ComfyUI refuses or cannot be reached."""
        try:
            ws = await self._connect()
        except InvalidStatus as error:
            status = error.response.status_code
            hint = " (check the credentials)" if status in (401, 403) else ""
            raise ServiceUnavailableError(
                f"ComfyUI refused the WebSocket {self._safe_url()}: HTTP {status}{hint}",
                {"status": status},
            ) from error
        except (OSError, TimeoutError, WebSocketException) as error:
            raise ServiceUnavailableError(
                f"cannot open the ComfyUI WebSocket {self._safe_url()}: {error!r}"
            ) from error
        self._ws = ws
        self._reader = asyncio.create_task(self._read_forever(ws))
        self._reader.add_done_callback(self._reader_stopped)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        for watch in list(self._watches.values()):
            watch.events.put_nowait(SocketSignal.CLOSED)

    @contextlib.contextmanager
    def watch(self, prompt_id: str) -> Iterator[PromptWatch]:
        """Receive ``prompt_id``'s messages while the block runs (enter it before submitting)."""
        if self._reader is None:
            raise ServiceUnavailableError("the ComfyUI connector is not started (call start())")
        watch = PromptWatch(prompt_id)
        self._watches[prompt_id] = watch
        try:
            yield watch
        finally:
            self._watches.pop(prompt_id, None)

    def _reader_stopped(self, reader: asyncio.Task[None]) -> None:
        # Running jobs still finish through their /queue + /history polls; say why they're slow.
        if not reader.cancelled() and reader.exception() is not None:
            log.error("comfyui_socket_reader_failed", error=repr(reader.exception()))

    def _safe_url(self) -> str:
        return self.url.split("?", 1)[0]

    async def _connect(self) -> ClientConnection:
        ws = await connect(
            self.url,
            additional_headers=self.headers,
            open_timeout=self.open_timeout_s,
            max_size=MAX_FRAME_BYTES,
        )
        self.connections += 1
        log.info("comfyui_socket_connected", url=self._safe_url(), connections=self.connections)
        return ws

    async def _read_forever(self, ws: ClientConnection) -> None:
        while True:
            await self._read(ws)
            self._ws = None
            ws = await self._reconnect()
            self._ws = ws
            for watch in list(self._watches.values()):
                watch.events.put_nowait(SocketSignal.RECONNECTED)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                self._dispatch(frame)
        except ConnectionClosed:
            pass
        log.warning(
            "comfyui_socket_dropped",
            url=self._safe_url(),
            close_code=ws.close_code,
            in_flight=len(self._watches),
        )

    def _dispatch(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            return  # previews: 4-byte event type, 4-byte format, image bytes; nothing we need
        try:
            message = json.loads(frame)
        except ValueError:
            log.warning("comfyui_socket_bad_frame", frame=frame[:200])
            return
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return
        data: dict[str, Any] = message["data"]
        watch = self._watches.get(str(data.get("prompt_id")))
        if watch is not None:
            watch.events.put_nowait(Message(str(message.get("type")), data))

    async def _reconnect(self) -> ClientConnection:
        delay = self.backoff_s
        while True:
            try:
                return await self._connect()
            except (OSError, TimeoutError, WebSocketException) as error:
                log.warning(
                    "comfyui_socket_reconnect_failed", url=self._safe_url(), error=repr(error)
                )
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_max_s)
