"""Progress of installs: a callback the agent turns into events, and a Rich bar for terminals.

Callbacks are plain synchronous calls so an installer never waits on a slow listener; a
listener that needs I/O (the agent publishing ``machine_startup_step`` events) queues the
report and sends it from its own task.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Protocol

from rich import filesize
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


class ProgressCallback(Protocol):
    """Receives ``(component, done, total, message)``.

    ``done``/``total`` are bytes for a model and steps for a custom node; ``total`` is None
    while unknown (a download without Content-Length).
    """

    def __call__(self, component: str, done: int, total: int | None, message: str) -> None: ...


def ignore_progress(component: str, done: int, total: int | None, message: str) -> None:
    """A callback for callers that want no progress."""


class FanOut:
    """Calls several callbacks in turn."""

    def __init__(self, callbacks: Sequence[ProgressCallback]) -> None:
        self._callbacks = tuple(callbacks)

    def __call__(self, component: str, done: int, total: int | None, message: str) -> None:
        for callback in self._callbacks:
            callback(component, done, total, message)


class Throttled:
    """Forwards a component's updates at most every ``interval_s``, but always its last ones.

    A download reports every chunk; the listener only needs a few updates a second.
    ``final`` updates (done == total, or a message change) always go through.
    """

    def __init__(self, callback: ProgressCallback, interval_s: float = 0.25) -> None:
        self._callback = callback
        self._interval_s = interval_s
        self._last: dict[str, tuple[float, str]] = {}

    def __call__(self, component: str, done: int, total: int | None, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(component)
        final = total is not None and done >= total
        if last is None or final or message != last[1] or now - last[0] >= self._interval_s:
            self._last[component] = (now, message)
            self._callback(component, done, total, message)


class RichProgressBar:
    """A Rich progress display with one bar per component; a :class:`ProgressCallback`.

    ``byte_components`` names the components counted in bytes (models); the others count steps.
    """

    def __init__(self, console: Console, byte_components: Collection[str] = ()) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[amount]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[message]}"),
            console=console,
            transient=False,
        )
        self._bytes = frozenset(byte_components)
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, component: str, done: int, total: int | None, message: str) -> None:
        if component in self._bytes:
            amount = filesize.decimal(done) + (f"/{filesize.decimal(total)}" if total else "")
        else:
            amount = f"{done}/{total} steps" if total else f"{done} steps"
        task = self._tasks.get(component)
        if task is None:
            task = self._progress.add_task(component, total=total, amount=amount, message=message)
            self._tasks[component] = task
        self._progress.update(task, completed=done, total=total, amount=amount, message=message)
