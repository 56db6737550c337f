"""One prompt's execution in the fake ComfyUI: the messages, in ComfyUI's order and routing.

For each prompt: ``execution_start``, ``execution_cached`` (nodes whose inputs did not change
since the last run; they do not execute again), then per node ``progress_state`` (the node
running, values as floats) and ``executing`` — in ComfyUI 0.27's order — per sampler step
``progress`` + ``progress_state`` + a binary preview frame, ``executed`` for output nodes,
and finally ``execution_success`` (or ``execution_error`` / ``execution_interrupted``)
followed by ``executing`` with ``node: null``. ``status`` goes out twice on an enqueue.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emp_queue.media import colour_for, solid_png
from emp_queue.testing.fakes.comfyui_graph import (
    NODE_CATALOGUE,
    SAMPLER_CLASSES,
    JsonDict,
    execution_order,
    node_signatures,
)

if TYPE_CHECKING:
    from emp_queue.testing.fakes.comfyui import FakeComfyUI

PREVIEW_IMAGE_EVENT = 1
PREVIEW_FORMAT_PNG = 2
MAX_IMAGE_SIDE = 2048


@dataclass(frozen=True)
class InjectedFailure:
    node: str  # a node id or a class_type
    message: str
    exception_type: str


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: JsonDict
    client_id: str | None
    outputs: list[str]

    def as_list(self) -> list[Any]:
        """As ``/queue`` and ``/history`` show it: ``[number, id, prompt, extra, outputs]``."""
        extra = {"client_id": self.client_id} if self.client_id is not None else {}
        return [self.number, self.prompt_id, self.prompt, extra, self.outputs]


@dataclass(frozen=True)
class CloseSocket:
    code: int


# None in an outbox means the client went away: stop sending, close nothing.
Frame = str | bytes | CloseSocket | None


@dataclass
class ClientSocket:
    sid: str
    outbox: asyncio.Queue[Frame] = field(default_factory=asyncio.Queue)


def json_frame(event: str, data: JsonDict) -> str:
    return json.dumps({"type": event, "data": data})


def preview_frame(png: bytes) -> bytes:
    return struct.pack(">II", PREVIEW_IMAGE_EVENT, PREVIEW_FORMAT_PNG) + png


class _InterruptRequestedError(Exception):
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id


class _NodeFailureError(Exception):
    def __init__(self, node_id: str, failure: InjectedFailure) -> None:
        self.node_id = node_id
        self.failure = failure


def _now_ms() -> int:
    return int(time.time() * 1000)


def _int_input(node: JsonDict, name: str, default: int) -> int:
    value = (node.get("inputs") or {}).get(name, default)
    return int(value) if isinstance(value, int | float | str) else default


class PromptRun:
    """Executes one queued prompt against the fake's state and sockets."""

    def __init__(self, fake: FakeComfyUI, item: QueueItem) -> None:
        self.fake = fake
        self.item = item
        self.prompt = item.prompt
        self.order = execution_order(item.prompt, item.outputs)
        self.signatures = node_signatures(item.prompt, self.order)
        self.outputs: JsonDict = {}
        self.executed: list[str] = []
        self.messages: list[list[Any]] = []
        self.progress: dict[str, JsonDict] = {}

    async def execute(self) -> None:
        pid = self.item.prompt_id
        self._add_message("execution_start", {"prompt_id": pid, "timestamp": _now_ms()})
        # Like ComfyUI's default cache, keep only what this prompt can reuse.
        wanted = set(self.signatures.values())
        self.fake.node_cache = {s: o for s, o in self.fake.node_cache.items() if s in wanted}
        cached = [n for n in self.order if self.signatures[n] in self.fake.node_cache]
        self._add_message(
            "execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()}
        )
        status = "success"
        try:
            for node_id in self.order:
                if node_id in cached:
                    self._replay_cached(node_id)
                else:
                    await self._execute_node(node_id)
        except _InterruptRequestedError as stop:
            status = "error"
            self._add_message(
                "execution_interrupted", self._failure_data(stop.node_id), broadcast=True
            )
        except _NodeFailureError as failed:
            status = "error"
            self._add_message("execution_error", self._error_data(failed))
        else:
            if not self.fake.without_success_message:
                self._add_message("execution_success", {"prompt_id": pid, "timestamp": _now_ms()})
        if self.item.client_id is not None:
            self._send("executing", {"node": None, "prompt_id": pid})
        if self.fake.history_delay_s:
            # ComfyUI writes the history in task_done, after the executor sent its last message.
            await asyncio.sleep(self.fake.history_delay_s)
        self._record_history(status)

    def _replay_cached(self, node_id: str) -> None:
        output = self.fake.node_cache[self.signatures[node_id]]
        if output is not None:
            self.outputs[node_id] = output
            self._send(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": output,
                    "prompt_id": self.item.prompt_id,
                },
            )

    async def _execute_node(self, node_id: str) -> None:
        node = self.prompt[node_id]
        class_type: str = node["class_type"]
        if self.fake.interrupt_requested:
            raise _InterruptRequestedError(node_id)
        pid = self.item.prompt_id
        # ComfyUI 0.27: the node's progress_state (running) comes before its `executing`.
        self._report_progress(node_id, 0, 1, "running")
        self._send("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
        failure = self.fake.take_failure(node_id, class_type)
        raised = (node.get("inputs") or {}).get("fake_raise")
        if failure is None and isinstance(raised, str):
            failure = InjectedFailure(node_id, raised, "RuntimeError")
        if failure is not None:
            raise _NodeFailureError(node_id, failure)
        if class_type in SAMPLER_CLASSES:
            self.fake.note_loaded(self._checkpoints())  # sampling moves the model to the GPU
            await self._sample(node_id, max(1, _int_input(node, "steps", 20)))
        elif self.fake.node_delay_s:
            await asyncio.sleep(self.fake.node_delay_s)
        output = self._save_images(node_id) if NODE_CATALOGUE[class_type].output_node else None
        if output is not None:
            self.outputs[node_id] = output
            self._send(
                "executed",
                {"node": node_id, "display_node": node_id, "output": output, "prompt_id": pid},
            )
        self.fake.node_cache[self.signatures[node_id]] = output
        self.executed.append(node_id)
        self._report_progress(node_id, 1, 1, "finished")

    async def _sample(self, node_id: str, steps: int) -> None:
        width, height, _ = self._latent_size()
        preview = solid_png(
            max(1, width // 8), max(1, height // 8), colour_for(self.signatures[node_id])
        )
        for step in range(1, steps + 1):
            if self.fake.step_delay_s:
                await asyncio.sleep(self.fake.step_delay_s)
            else:
                await asyncio.sleep(0)
            if self.fake.interrupt_requested:
                raise _InterruptRequestedError(node_id)
            self._send(
                "progress",
                {"value": step, "max": steps, "prompt_id": self.item.prompt_id, "node": node_id},
            )
            self._report_progress(node_id, step, steps, "running")
            self.fake.send(preview_frame(preview), self.item.client_id)

    def _checkpoints(self) -> list[str]:
        return [
            str(self.prompt[n]["inputs"].get("ckpt_name"))
            for n in self.order
            if self.prompt[n]["class_type"] == "CheckpointLoaderSimple"
        ]

    def _latent_size(self) -> tuple[int, int, int]:
        for node_id in self.order:
            node = self.prompt[node_id]
            if node["class_type"] == "EmptyLatentImage":
                width = min(MAX_IMAGE_SIDE, max(8, _int_input(node, "width", 512)))
                height = min(MAX_IMAGE_SIDE, max(8, _int_input(node, "height", 512)))
                return width, height, max(1, _int_input(node, "batch_size", 1))
        return 64, 64, 1

    def _save_images(self, node_id: str) -> JsonDict:
        node = self.prompt[node_id]
        width, height, batch = self._latent_size()
        if node["class_type"] == "SaveImage":
            kind = "output"
            prefix = str((node.get("inputs") or {}).get("filename_prefix", "ComfyUI"))
        else:
            kind, prefix = "temp", f"ComfyUI_temp_{self.item.prompt_id[:5]}"
        images = []
        for index in range(batch):
            name = self.fake.next_filename(prefix)
            colour = colour_for(f"{self.signatures[node_id]}:{index}")
            self.fake.files[(kind, "", name)] = solid_png(width, height, colour)
            images.append({"filename": name, "subfolder": "", "type": kind})
        return {"images": images}

    def _report_progress(self, node_id: str, value: int, maximum: int, state: str) -> None:
        pid = self.item.prompt_id
        self.progress[node_id] = {
            "value": float(value),  # floats in progress_state, as the real server sends
            "max": float(maximum),
            "state": state,
            "node_id": node_id,
            "prompt_id": pid,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        self._send("progress_state", {"prompt_id": pid, "nodes": dict(self.progress)})

    def _failure_data(self, node_id: str) -> JsonDict:
        return {
            "prompt_id": self.item.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
            "timestamp": _now_ms(),
        }

    def _error_data(self, failed: _NodeFailureError) -> JsonDict:
        failure = failed.failure
        traceback = [
            '  File "execution.py", line 496, in execute\n',
            f"{failure.exception_type}: {failure.message}\n",
        ]
        return {
            **self._failure_data(failed.node_id),
            "exception_message": failure.message,
            "exception_type": failure.exception_type,
            "traceback": traceback,
            "current_inputs": {},
            "current_outputs": {},
        }

    def _add_message(self, event: str, data: JsonDict, broadcast: bool = False) -> None:
        # ComfyUI's PromptExecutor.add_message: kept for history, sent only to the prompt's
        # client unless marked broadcast (then to everyone when the prompt has no client).
        self.messages.append([event, data])
        if self.item.client_id is not None or broadcast:
            self._send(event, data)

    def _send(self, event: str, data: JsonDict) -> None:
        self.fake.send(json_frame(event, data), self.item.client_id)

    def _record_history(self, status: str) -> None:
        meta = {
            node_id: {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            for node_id in self.outputs
        }
        self.fake.history[self.item.prompt_id] = {
            "prompt": self.item.as_list(),
            "outputs": self.outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": self.messages,
            },
            "meta": meta,
        }
