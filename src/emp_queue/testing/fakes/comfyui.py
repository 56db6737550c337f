"""A fake ComfyUI: the real HTTP + WebSocket protocol, one prompt executing at a time.

Messages are routed as ComfyUI routes them: a prompt submitted with a ``client_id`` reports to
the socket opened with that ``clientId``; a prompt submitted without one broadcasts its
``executing``, ``progress``, ``progress_state``, ``executed``, ``execution_interrupted`` and
preview frames to every socket (and sends no ``execution_start``/``execution_success``) — which
is how a worker sees other clients' prompts on its own socket. ``status`` goes to everyone.

Failure modes for tests: :meth:`FakeComfyUI.restart` (queue, history and sockets lost),
:meth:`FakeComfyUI.fail_next` or a ``"fake_raise": "<message>"`` input on any node
(``execution_error``), ``step_delay_s`` with the graph's KSampler ``steps`` (slow runs to cancel),
``POST /interrupt`` (``execution_interrupted``), ``POST /free`` (``loaded_models`` emptied,
the node cache too with ``free_memory``, after the running prompt), ``models_dir`` (model
folders read from disk), :meth:`FakeComfyUI.drop_sockets` (a network blip: sockets close,
the queue keeps running), ``refuse_sockets`` (WebSocket upgrades rejected,
as by a misbehaving proxy) and ``required_authorization`` (an auth proxy in front of ComfyUI:
HTTP answers 401 and the WebSocket handshake 403 without that ``Authorization`` header).
``without_success_message`` behaves like old versions that end a prompt with ``executing``
``{node: null}`` only; ``history_delay_s`` makes ``/history`` lag behind the last message, as it
can in ComfyUI. ``request_log`` records every request and ``interrupt_requests`` every
``POST /interrupt``.
A node whose inputs did not change since the previous prompt is cached, as in ComfyUI: vary the
seed to make a sampler run again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI

from emp_queue.testing.fakes.comfyui_app import RequestRecord, add_comfyui_routes
from emp_queue.testing.fakes.comfyui_graph import (
    EXISTING_FILES,
    INPUT_FILES,
    JsonDict,
    validate_prompt,
)
from emp_queue.testing.fakes.comfyui_run import (
    ClientSocket,
    CloseSocket,
    InjectedFailure,
    PromptRun,
    QueueItem,
    json_frame,
)
from emp_queue.testing.fakes.server import FakeService

DEFAULT_MODELS: Mapping[str, Sequence[str]] = {
    "checkpoints": ("sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"),
    "loras": ("detail-tweaker.safetensors",),
    "vae": ("sdxl_vae.safetensors",),
}
MODEL_SUFFIXES = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
"""What ComfyUI's ``folder_paths.supported_pt_extensions`` lists in a model folder."""
SERVICE_RESTART_CLOSE_CODE = 1012
GOING_AWAY_CLOSE_CODE = 1001


class FakeComfyUI(FakeService):
    """State and control of the fake; ``app()`` serves it, ``running()`` runs it on loopback."""

    service_name = "comfyui"

    def __init__(
        self,
        *,
        models: Mapping[str, Sequence[str]] = DEFAULT_MODELS,
        step_delay_s: float = 0.0,
        node_delay_s: float = 0.0,
        version: str = "0.3.43",
        device: Literal["cuda", "cpu"] = "cuda",
        models_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.device = device  # "cpu": /system_stats as ComfyUI 0.27 on CPU reports it
        self.models = {folder: list(names) for folder, names in models.items()}
        self.models_dir = models_dir
        """A real models folder: its ``<folder>/`` files are listed too, read at each request
        (ComfyUI re-reads a folder whose modification time changed), so deleted files vanish."""
        self.loaded_models: list[str] = []
        """Checkpoints in (GPU) memory, most recently used last: a prompt whose sampler runs
        loads its ``CheckpointLoaderSimple`` checkpoints; ``POST /free`` unloads them all."""
        self.free_requests: list[JsonDict] = []
        self._free_flags: JsonDict = {}
        self.step_delay_s = step_delay_s
        self.node_delay_s = node_delay_s
        self.version = version
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, filename)
        self.history: dict[str, JsonDict] = {}
        self.node_cache: dict[str, JsonDict | None] = {}  # node signature -> its UI output
        self.executed_prompt_ids: list[str] = []  # every prompt the executor started, in order
        self.restarts = 0
        self.history_delay_s = 0.0  # how long /history lags behind the prompt's last message
        self.without_success_message = False  # old ComfyUI: `executing` with node None ends it
        self.required_authorization: str | None = None
        self.refuse_sockets = False
        self.request_log: list[RequestRecord] = []
        self.interrupt_requests: list[str | None] = []
        self._pending: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._number = 0
        self._work = asyncio.Condition()
        self._interrupt_requested = False
        self._failures: list[InjectedFailure] = []
        self._sockets: dict[str, ClientSocket] = {}
        self._executor: asyncio.Task[None] | None = None
        self._file_counter = 0

    def add_routes(self, app: FastAPI) -> None:
        add_comfyui_routes(app, self)

    async def on_startup(self) -> None:
        self._executor = self.spawn(self._execute_forever())

    # -- control API ----------------------------------------------------------------------

    def fail_next(
        self, node: str, message: str = "fake failure", exception_type: str = "RuntimeError"
    ) -> None:
        """Make the next prompt that executes ``node`` (an id or a class_type) raise there."""
        self._failures.append(InjectedFailure(node, message, exception_type))

    async def restart(self) -> None:
        """Behave like a ComfyUI process restart: sockets drop, queue and history are lost.

        The running prompt stops without another message and never reaches the history;
        files in the output folder survive (they are on disk), temporary previews do not.
        """
        self.restarts += 1
        if self._executor is not None:
            self._executor.cancel()
            await asyncio.gather(self._executor, return_exceptions=True)
        for client in self._sockets.values():
            client.outbox.put_nowait(CloseSocket(SERVICE_RESTART_CLOSE_CODE))
        self._sockets.clear()
        self._pending.clear()
        self._running = None
        self.history.clear()
        self.node_cache.clear()
        self._number = 0
        self.files = {key: data for key, data in self.files.items() if key[0] != "temp"}
        self._executor = self.spawn(self._execute_forever())

    def drop_sockets(self) -> None:
        """Close every socket (a network blip); the queue, history and running prompt go on."""
        for client in self._sockets.values():
            client.outbox.put_nowait(CloseSocket(GOING_AWAY_CLOSE_CODE))
        self._sockets.clear()

    @property
    def interrupt_requested(self) -> bool:
        return self._interrupt_requested

    @property
    def connected_clients(self) -> list[str]:
        return list(self._sockets)

    # -- protocol operations (the routes call these) --------------------------------------

    def model_folders(self) -> dict[str, list[str]]:
        """Model folder → file names: :attr:`models` and the files under :attr:`models_dir`."""
        folders = {folder: list(names) for folder, names in self.models.items()}
        if self.models_dir is not None and self.models_dir.is_dir():
            for folder in sorted(p for p in self.models_dir.iterdir() if p.is_dir()):
                names = folders.setdefault(folder.name, [])
                for path in sorted(folder.rglob("*")):
                    name = path.relative_to(folder).as_posix()
                    if (
                        path.suffix.lower() in MODEL_SUFFIXES
                        and path.is_file()
                        and name not in names
                    ):
                        names.append(name)
        return folders

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """``POST /free``: ComfyUI raises flags its prompt loop acts on once idle."""
        self.free_requests.append({"unload_models": unload_models, "free_memory": free_memory})
        self._free_flags = {"unload_models": unload_models, "free_memory": free_memory}
        if self._running is None:
            self._apply_free()

    def _apply_free(self) -> None:
        flags, self._free_flags = self._free_flags, {}
        if flags.get("unload_models"):
            self.loaded_models.clear()
        if flags.get("free_memory"):
            self.node_cache.clear()  # ComfyUI resets its execution cache

    def note_loaded(self, checkpoints: Sequence[str]) -> None:
        for name in checkpoints:
            if name in self.loaded_models:
                self.loaded_models.remove(name)
            self.loaded_models.append(name)

    def model_choices(self) -> dict[str, list[str]]:
        inputs = sorted(name for kind, sub, name in self.files if kind == "input" and not sub)
        existing = [f"{kind}:{sub}/{name}" if sub else f"{kind}:{name}"
                    for kind, sub, name in self.files]  # fmt: skip
        return {**self.model_folders(), INPUT_FILES: inputs, EXISTING_FILES: existing}

    async def submit(
        self, prompt: Any, client_id: str | None, prompt_id: str | None, front: bool = False
    ) -> JsonDict:
        """``POST /prompt``: validate (PromptValidationError: the 400 body), queue, answer 200."""
        validated = validate_prompt(prompt, self.model_choices())
        self._number += 1
        number = -self._number if front else self._number
        item = QueueItem(
            number, prompt_id or str(uuid.uuid4()), prompt, client_id, validated.outputs
        )
        async with self._work:
            self._pending.append(item)
            self._pending.sort(key=lambda queued: queued.number)
            self._work.notify()
        # ComfyUI 0.27 sends the queue status twice on an enqueue (queue changed, then the
        # executor's own update); a client must take the second as no news.
        self._send_status()
        self._send_status()
        return {"prompt_id": item.prompt_id, "number": number, "node_errors": validated.node_errors}

    def queue(self) -> JsonDict:
        running = [self._running.as_list()] if self._running is not None else []
        return {"queue_running": running, "queue_pending": [i.as_list() for i in self._pending]}

    def delete_pending(self, prompt_ids: Sequence[str] | None) -> None:
        """``POST /queue``: drop the listed pending prompts, or all of them (``clear``)."""
        if prompt_ids is None:
            self._pending.clear()
        else:
            self._pending = [i for i in self._pending if i.prompt_id not in prompt_ids]
        self._send_status()

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``POST /interrupt``: stop the running prompt (only it, when ``prompt_id`` is given)."""
        self.interrupt_requests.append(prompt_id)
        if self._running is None:
            return
        if prompt_id is None or prompt_id == self._running.prompt_id:
            self._interrupt_requested = True

    def queue_remaining(self) -> int:
        return len(self._pending) + (1 if self._running is not None else 0)

    def store_upload(
        self, data: bytes, name: str, kind: str, subfolder: str, overwrite: bool
    ) -> str:
        """``POST /upload/image``: keep the file; without overwrite a taken name gets `` (n)``."""
        stem, dot, suffix = name.rpartition(".")
        counter = 1
        while not overwrite and (kind, subfolder, name) in self.files:
            name = f"{stem} ({counter}).{suffix}" if dot else f"{suffix} ({counter})"
            counter += 1
        self.files[(kind, subfolder, name)] = data
        return name

    def take_failure(self, node_id: str, class_type: str) -> InjectedFailure | None:
        for failure in self._failures:
            if failure.node in (node_id, class_type):
                self._failures.remove(failure)
                return failure
        return None

    def next_filename(self, prefix: str) -> str:
        self._file_counter += 1
        return f"{prefix}_{self._file_counter:05}_.png"

    # -- sockets --------------------------------------------------------------------------

    def attach(self, sid: str) -> ClientSocket:
        client = ClientSocket(sid)
        self._sockets[sid] = client  # like ComfyUI, a second socket with the same id wins
        client.outbox.put_nowait(self._status_frame(sid))
        return client

    def detach(self, client: ClientSocket) -> None:
        if self._sockets.get(client.sid) is client:
            del self._sockets[client.sid]

    def send(self, frame: str | bytes, sid: str | None) -> None:
        """Send to the socket of ``sid`` (dropped when it is not connected), or to all."""
        if sid is None:
            targets = list(self._sockets.values())
        else:
            targets = [self._sockets[sid]] if sid in self._sockets else []
        for client in targets:
            client.outbox.put_nowait(frame)

    def _status_frame(self, sid: str | None = None) -> str:
        data: JsonDict = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}
        if sid is not None:
            data["sid"] = sid
        return json_frame("status", data)

    def _send_status(self) -> None:
        self.send(self._status_frame(), None)

    async def _execute_forever(self) -> None:
        while True:
            async with self._work:
                await self._work.wait_for(lambda: bool(self._pending))
                item = self._pending.pop(0)
            self._running = item
            self._interrupt_requested = False
            self.executed_prompt_ids.append(item.prompt_id)
            await PromptRun(self, item).execute()
            self._running = None
            if self._free_flags:
                self._apply_free()
            self._send_status()
