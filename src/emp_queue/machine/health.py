"""The machine's one HTTP server: liveness, readiness, status, logs and restarts.

Bound to loopback it is open (the operator is on the box); bound anywhere else it needs
``EMP_MACHINE_HEALTH_KEY`` as a bearer key on every route but ``/health`` — the liveness
answer container platforms poll without headers, which says nothing but "alive".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
from collections.abc import Iterator
from typing import Annotated, Any, Protocol

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from emp_queue.errors import ConfigurationError, EmpError
from emp_queue.listening import bound_socket
from emp_queue.machine_models import MachineRecord


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UnknownServiceError(EmpError):
    """No service of that name runs on this machine; ``/services`` lists them."""


class MachineControl(Protocol):
    """What the health API needs from the agent."""

    @property
    def is_ready(self) -> bool: ...

    def snapshot(self) -> MachineRecord: ...

    def tail_logs(self, service: str, lines: int) -> list[str]: ...

    def request_restart(self, service: str | None) -> None: ...


def create_health_app(control: MachineControl, key: SecretStr | None) -> FastAPI:
    app = FastAPI(title="emp machine health", openapi_url=None, docs_url=None, redoc_url=None)

    def authorized(request: Request) -> None:
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.encode(), key.get_secret_value().encode()
        ):
            raise HTTPException(
                401,
                "send Authorization: Bearer <EMP_MACHINE_HEALTH_KEY>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    guarded = [Depends(authorized)]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", dependencies=guarded)
    async def ready() -> JSONResponse:
        record = control.snapshot()
        ok = control.is_ready
        return JSONResponse({"ready": ok, "phase": str(record.phase)}, 200 if ok else 503)

    @app.get("/status", dependencies=guarded)
    async def status() -> dict[str, Any]:
        return control.snapshot().model_dump(mode="json", exclude={"online"})

    @app.get("/services", dependencies=guarded)
    async def services() -> list[dict[str, Any]]:
        return [state.model_dump(mode="json") for state in control.snapshot().services]

    @app.get("/logs/{service}", dependencies=guarded)
    async def logs(
        service: str, lines: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        with _known(control, service):
            return {"service": service, "lines": control.tail_logs(service, lines)}

    @app.post("/restart/{service}", dependencies=guarded, status_code=202)
    async def restart_service(service: str) -> dict[str, str]:
        with _known(control, service):
            control.request_restart(service)
        return {"restarting": service}

    @app.post("/restart", dependencies=guarded, status_code=202)
    async def restart_all() -> dict[str, str]:
        control.request_restart(None)
        return {"restarting": "all"}

    return app


@contextlib.contextmanager
def _known(control: MachineControl, service: str) -> Iterator[None]:
    try:
        yield
    except UnknownServiceError as error:
        raise HTTPException(404, str(error)) from None


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the agent's loop: signals stay the agent's (it stops us in order)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """Serves the health app on a socket bound before serving, so the port (even a
    free one picked with port 0) is known, and reachable, as soon as :meth:`start` returns."""

    def __init__(self, app: FastAPI, host: str, port: int, key: SecretStr | None) -> None:
        if key is None and not is_loopback(host):
            raise ConfigurationError(
                f"the health API would listen on {host} without a key; set "
                "EMP_MACHINE_HEALTH_KEY, or bind it to loopback with EMP_HEALTH_HOST=127.0.0.1"
            )
        self.app = app
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        sock = bound_socket(self.host, self.requested_port, "EMP_HEALTH_PORT")
        sock.listen(128)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, log_config=None, lifespan="off", access_log=False)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="health-api")
        return self.port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = None
        self._task = None
