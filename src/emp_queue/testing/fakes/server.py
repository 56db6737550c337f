"""What every fake shares: an app with a lifespan that owns its tasks, and an in-process server.

A fake is a :class:`FakeService`: it holds the service's state and the control methods a test
calls, and :meth:`FakeService.app` builds the ASGI app that speaks the real protocol.
:meth:`FakeService.running` serves it with uvicorn on a loopback port inside the current event
loop and yields the base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI

from emp_queue.api.serving import LOOPBACK, serve_in_process


class FakeService(ABC):
    """Base of the fakes: background tasks owned by the app's lifespan, and a runner."""

    service_name: str = "fake"

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:PORT``) while :meth:`running` is active."""
        if self._url is None:
            raise RuntimeError(
                f"the fake {self.service_name} is not running; "
                "enter `async with fake.running():` first"
            )
        return self._url

    @abstractmethod
    def add_routes(self, app: FastAPI) -> None:
        """Register the service's endpoints on ``app``."""

    async def on_startup(self) -> None:  # noqa: B027 (an optional hook)
        """Start what runs for the app's lifetime (spawn it with :meth:`spawn`)."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task the app owns: it is cancelled when the app shuts down."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.on_startup()
        try:
            yield
        finally:
            await self._cancel_tasks()

    def app(self) -> FastAPI:
        """The ASGI app: serve it with any ASGI server that runs the lifespan."""
        app = FastAPI(
            title=f"fake {self.service_name}",
            lifespan=self._lifespan,
            openapi_url=None,
            docs_url=None,
            redoc_url=None,
        )
        self.add_routes(app)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = LOOPBACK, port: int = 0) -> AsyncIterator[str]:
        """Serve the fake on ``host:port`` (0: a free port) and yield its base URL."""
        async with serve_in_process(self.app(), host=host, port=port) as url:
            self._url = url
            try:
                yield url
            finally:
                self._url = None
