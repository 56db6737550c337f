"""Following one submitted prompt to its end: progress, the terminal message, reconciliation.

Which ``execution_error`` is whose fault: ComfyUI reports a node's exception the same way
whether the workflow fed it bad input or the machine ran out of memory. The rule here: an
error whose ``exception_type`` or message matches one of the connector's
``service_error_markers`` (out of memory, CUDA/cuDNN errors, connection and disk errors — the
machine's state, which another machine may not share) is a **service fault** and is retried
elsewhere; any other exception is raised by a node over its inputs and would fail again on any
machine, so it is a **job fault**. An ``execution_interrupted`` we did not ask for (someone
pressed cancel in ComfyUI's UI, or another client interrupted it) is a service fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from emp_queue.connectors.base import RunningJob, job_fault, service_fault
from emp_queue.connectors.comfyui_http import ComfyUIHttp, Place
from emp_queue.connectors.comfyui_socket import Message, PromptWatch, SocketSignal
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass

log = structlog.get_logger(__name__)

BEFORE_DONE_CEILING = 0.99
"""The most a running prompt shows: 1.0 is kept for outputs stored."""


@dataclass(frozen=True)
class WaitPolicy:
    poll_interval_s: float
    """How often to ask ComfyUI where the prompt is even when the socket looks fine."""
    unreachable_grace_s: float
    """How long ComfyUI may be unreachable over HTTP before the prompt counts as lost."""
    history_wait_s: float
    """How long ``/history`` may lag behind ``execution_success``."""
    service_error_markers: Sequence[str]


def execution_error_fault(data: dict[str, Any], markers: Sequence[str]) -> JobFailedError:
    """The failure an ``execution_error`` stands for (rule in the module docstring)."""
    kind = str(data.get("exception_type") or "")
    text = str(data.get("exception_message") or "").strip()
    node = f"node {data.get('node_id')} ({data.get('node_type')})"
    details: dict[str, object] = {
        "node_id": data.get("node_id"),
        "node_type": data.get("node_type"),
        "exception_type": kind,
        "traceback": "".join(map(str, data.get("traceback") or []))[-4000:],
    }
    haystack = f"{kind}: {text}".lower()
    message = f"ComfyUI {node} raised {kind or 'an error'}: {text}"[:2000]
    if any(marker.lower() in haystack for marker in markers):
        return service_fault(message, **details)
    return job_fault(message, **details)


def interrupted_fault(data: dict[str, Any]) -> JobFailedError:
    return service_fault(
        f"ComfyUI interrupted the prompt at node {data.get('node_id')} "
        f"({data.get('node_type')}) without our asking (interrupted in ComfyUI's UI or by "
        "another client?)",
        node_id=data.get("node_id"),
    )


class ProgressTracker:
    """Per-node fractions from every progress message, summed over the graph's nodes.

    Each node's fraction only grows and a finished or cached node counts 1, so the sum never
    goes backward, whatever order the messages arrive in.
    """

    def __init__(self, class_types: dict[str, str]) -> None:
        self.class_types = class_types
        self.fractions: dict[str, float] = {}
        self.current: str | None = None
        self.step: tuple[int, int] | None = None

    def apply(self, message: Message) -> None:
        data = message.data
        if message.type == "execution_cached":
            for node in data.get("nodes") or []:
                self._set(str(node), 1.0)
        elif message.type == "executing":
            self._start(self._resolve(data.get("node"), data))
        elif message.type == "progress":
            node = self._resolve(data.get("node"), data) or self.current
            value, maximum = data.get("value"), data.get("max")
            if node is not None and isinstance(value, int | float) and isinstance(maximum, int):
                self._set(node, value / maximum if maximum > 0 else 0.0)
                self.step = (int(value), maximum)
        elif message.type == "progress_state":
            for key, state in (data.get("nodes") or {}).items():
                if isinstance(state, dict):
                    node = self._resolve(key, state)
                    self._node_state(node, state)
                    # ComfyUI 0.27 says a node runs here, before its `executing`.
                    if state.get("state") == "running" and node is not None:
                        self._start(node)
        elif message.type == "executed":
            node = self._resolve(data.get("node"), data)
            if node is not None:
                self._set(node, 1.0)

    def _start(self, node: str | None) -> None:
        if node == self.current:
            return
        if self.current is not None:
            self._set(self.current, 1.0)  # old versions say nothing else when a node ends
        self.current, self.step = node, None

    def _node_state(self, node: str | None, state: dict[str, Any]) -> None:
        if node is None:
            return
        value, maximum = state.get("value"), state.get("max")
        if state.get("state") == "finished":
            self._set(node, 1.0)
        elif isinstance(value, int | float) and isinstance(maximum, int | float) and maximum > 0:
            self._set(node, value / maximum)

    def _resolve(self, node: Any, data: dict[str, Any]) -> str | None:
        """The graph node a message is about (expanded subgraph nodes count as their parent)."""
        for candidate in (node, data.get("display_node_id"), data.get("real_node_id")):
            if candidate is not None and str(candidate) in self.class_types:
                return str(candidate)
        parent = data.get("parent_node_id")
        return str(parent) if parent is not None and str(parent) in self.class_types else None

    def _set(self, node: str, fraction: float) -> None:
        if node in self.class_types:
            bounded = min(max(fraction, 0.0), 1.0)
            self.fractions[node] = max(self.fractions.get(node, 0.0), bounded)

    def fraction(self) -> float:
        total = max(len(self.class_types), 1)
        return min(sum(self.fractions.values()) / total, BEFORE_DONE_CEILING)

    def describe(self) -> str:
        if self.current is None:
            return "running"
        text = f"{self.class_types.get(self.current, '?')} (node {self.current})"
        return f"{text} step {self.step[0]}/{self.step[1]}" if self.step else text


class PromptWaiter:
    """Waits for one prompt; :meth:`wait` returns its history entry or raises its failure."""

    def __init__(
        self,
        http: ComfyUIHttp,
        watch: PromptWatch,
        job: RunningJob,
        class_types: dict[str, str],
        policy: WaitPolicy,
    ) -> None:
        self.http = http
        self.watch = watch
        self.prompt_id = watch.prompt_id
        self.job = job
        self.policy = policy
        self.tracker = ProgressTracker(class_types)
        self.shown = (0.0, "")
        self.unreachable_since: float | None = None

    async def wait(self) -> dict[str, Any]:
        while True:
            event = await self.watch.next(self.policy.poll_interval_s)
            if event is SocketSignal.CLOSED:
                raise service_fault(f"the ComfyUI connector closed while {self.prompt_id} ran")
            if isinstance(event, Message):
                entry = await self._on_message(event)
            else:
                entry = await self._reconcile("poll" if event is None else str(event))
            if entry is not None:
                return entry

    async def _on_message(self, message: Message) -> dict[str, Any] | None:
        if message.type == "execution_success":
            if (entry := await self._history_within(self.policy.history_wait_s)) is None:
                raise service_fault(
                    f"ComfyUI reported success for {self.prompt_id} but /history had no entry "
                    f"within {self.policy.history_wait_s} s",
                    prompt_id=self.prompt_id,
                )
            return self._finished(entry)
        if message.type == "execution_error":
            raise execution_error_fault(message.data, self.policy.service_error_markers)
        if message.type == "execution_interrupted":
            raise interrupted_fault(message.data)
        if message.type == "executing" and message.data.get("node") is None:
            # Old versions' only "done" signal: the history entry should follow shortly.
            if (entry := await self._history_within(self.policy.history_wait_s)) is not None:
                return self._finished(entry)
            return await self._reconcile("executing_done")
        self.tracker.apply(message)
        await self._report()
        return None

    async def _report(self) -> None:
        fraction, node = self.tracker.fraction(), self.tracker.current or ""
        if node != self.shown[1]:
            # A node started: a message-only report always goes out (never merged away).
            await self.job.progress(None, self.tracker.describe())
        if int(fraction * 100) > int(self.shown[0] * 100) or node != self.shown[1]:
            self.shown = (max(fraction, self.shown[0]), node)
            await self.job.progress(self.shown[0], self.tracker.describe())

    async def _reconcile(self, reason: str) -> dict[str, Any] | None:
        try:
            located = await self.http.locate(self.prompt_id)
        except JobFailedError as error:
            if error.failure_class != FailureClass.SERVICE_FAULT:
                raise
            now = time.monotonic()
            self.unreachable_since = self.unreachable_since or now
            if now - self.unreachable_since >= self.policy.unreachable_grace_s:
                raise
            log.warning("comfyui_reconcile_failed", prompt_id=self.prompt_id, error=str(error))
            return None
        self.unreachable_since = None
        log.info(
            "comfyui_prompt_reconciled",
            prompt_id=self.prompt_id,
            reason=reason,
            place=located.place,
        )
        if located.place is Place.LOST:
            raise service_fault(
                f"ComfyUI lost the prompt (restart?): {self.prompt_id} is in neither its queue "
                "nor its history",
                prompt_id=self.prompt_id,
            )
        return self._finished(located.entry) if located.entry is not None else None

    async def _history_within(self, wait_s: float) -> dict[str, Any] | None:
        """The history entry, polled for ``wait_s``: ComfyUI writes it after the last message."""
        deadline = time.monotonic() + wait_s
        delay = 0.02
        while (entry := await self.http.history(self.prompt_id)) is None:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return entry

    def _finished(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The entry of a successful prompt; a failed one raises the failure it recorded."""
        status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
        if (status or {}).get("status_str") != "error":
            return entry
        for item in (status or {}).get("messages") or []:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict):
                if item[0] == "execution_error":
                    raise execution_error_fault(item[1], self.policy.service_error_markers)
                if item[0] == "execution_interrupted":
                    raise interrupted_fault(item[1])
        raise service_fault(f"ComfyUI recorded {self.prompt_id} as failed without saying why")
