"""Serving an ASGI app inside an event loop someone else owns (``emp up``, the fakes, tests).

uvicorn's own ``Server.serve`` installs signal handlers and polls a flag every 0.1 s; here
the loop's owner keeps the signals and stopping is an event, so a process that runs the API
next to other tasks (the local stack) shuts everything down in its own order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn

from emp_queue.api.log_redaction import redact_keys_in_server_logs
from emp_queue.listening import bound_socket

LOOPBACK = "127.0.0.1"


class InProcessServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the loop's owner and stops without polling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self.stop_requested.wait()


@contextlib.asynccontextmanager
async def serve_in_process(
    app: Any, host: str = LOOPBACK, port: int = 0, port_setting: str = "", **config: Any
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop until the block exits; yield its base URL.

    Binding here rather than in uvicorn turns "port in use" into a :class:`CannotListenError`
    (an ``OSError`` too; its message names ``port_setting``, the setting that chose the port)
    for the caller, where uvicorn would call ``sys.exit`` inside a task, and tells the port
    chosen for 0.
    """
    sock = bound_socket(host, port, port_setting)
    bound_port: int = sock.getsockname()[1]
    settings: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 2,
        **config,
    }
    server = InProcessServer(uvicorn.Config(app, **settings))
    redact_keys_in_server_logs()
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError(f"the server on {host}:{bound_port} stopped while starting")
            await asyncio.sleep(0.002)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        server.stop_requested.set()
        await serving
        sock.close()
