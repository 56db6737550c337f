"""What every fake shares: an app with a lifespan that owns its tasks, and an in-process server.

A fake is a :class:`FakeService`: it holds the service's state and the control methods a test
calls, and :meth:`FakeService.app` builds the ASGI app that speaks the real protocol.
:meth:`FakeService.running` serves it with uvicorn on a loopback port inside the current event
loop and yields the base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any

import uvicorn
from fastapi import FastAPI

LOOPBACK = "127.0.0.1"


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the loop's owner and stops without polling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The test runner or our CLI owns SIGINT/SIGTERM; uvicorn must not replace them.
        yield

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; a test suite starting a fake per test
        # would spend seconds in that poll, so wait on an event instead.
        await self.on_tick(0)
        await self.stop_requested.wait()


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


@contextlib.asynccontextmanager
async def serve_in_process(app: FastAPI, host: str = LOOPBACK, port: int = 0) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop until the block exits; yield its base URL."""
    # Binding here rather than in uvicorn turns "port in use" into an OSError for the caller
    # (uvicorn would call sys.exit inside a task) and tells us the port chosen for port 0.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = _InProcessServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError(f"the fake server on {host}:{bound_port} stopped while starting")
            await asyncio.sleep(0.002)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        server.stop_requested.set()
        await serving
        sock.close()
