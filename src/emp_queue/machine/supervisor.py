"""Child processes kept alive: readiness gates, restart with backoff, crash loops, clean stops.

Each child runs in its own process group (its own session), so a stop reaches whatever it
spawned too, and a Ctrl-C at the agent's terminal does not hit the children behind the
agent's back: the agent stops them in order. A child is "running" only once its readiness
probe answers; the probe is polled while the child is alive, never slept past.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx
import structlog

from emp_queue.errors import EmpError
from emp_queue.machine_models import ServiceState, ServiceStatus

log = structlog.get_logger(__name__)

ReadinessProbe = Callable[[], Awaitable[bool]]
OutputSink = Callable[[str, str], None]
"""Receives (service name, line) for every line a child writes; must not block."""
ChangeListener = Callable[["ManagedProcess", str], None]
"""Told (process, reason) whenever a process changes status."""

PIPE_LIMIT_BYTES = 1024 * 1024
PROBE_INTERVAL_MIN_S = 0.02
PROBE_INTERVAL_MAX_S = 0.25


class ServiceStartError(EmpError):
    """A service did not become ready; the message says why and which log to read."""


def http_probe(client: httpx.AsyncClient, url: str) -> ReadinessProbe:
    """Ready when ``GET url`` answers 2xx."""

    async def probe() -> bool:
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            return False
        return response.is_success

    return probe


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: a port whose old connections sit in TIME_WAIT is free; only a
        # live listener makes the bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    kind: str
    """``daemon`` or ``worker``."""
    command: Sequence[str]
    env: Mapping[str, str]
    """The child's whole environment."""
    probe: ReadinessProbe
    start_timeout_s: float
    stop_grace_s: float
    cwd: str | None = None
    port: int | None = None
    """Checked free before a start: a probe answered by a stranger would lie."""
    gpu: int | None = None
    before_start: Callable[[], Awaitable[None]] | None = None
    """Run before every spawn (a worker's stale registration is cleared here)."""
    after_crash: Callable[[], Awaitable[None]] | None = None
    """Run as soon as the process exited on its own, before any restart: a dead worker's
    jobs are handed back here instead of waiting for their leases to run out."""


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    crash_loop_count: int = 5
    crash_loop_window_s: float = 120.0

    def delay_s(self, recent_crashes: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(recent_crashes - 1, 0)))


class ManagedProcess:
    """One supervised child: start behind its probe, restart on crash, stop gracefully."""

    def __init__(
        self,
        spec: ProcessSpec,
        policy: RestartPolicy,
        *,
        output: OutputSink,
        on_change: ChangeListener,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self._output = output
        self._on_change = on_change
        self.status = ServiceStatus.PENDING
        self.detail: str | None = None
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._watch: asyncio.Task[None] | None = None
        self._crashes: collections.deque[float] = collections.deque()
        self._last_lines: collections.deque[str] = collections.deque(maxlen=5)
        self._stopping = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def state(self) -> ServiceState:
        return ServiceState(
            name=self.spec.name,
            kind=self.spec.kind,
            status=self.status,
            pid=self.pid,
            port=self.spec.port,
            gpu=self.spec.gpu,
            restarts=self.restarts,
            detail=self.detail,
        )

    async def start(self) -> None:
        """Spawn and wait until ready; then keep it alive. Raises :class:`ServiceStartError`."""
        self._stopping = False
        self._crashes.clear()
        try:
            await self._launch_until_ready()
        except ServiceStartError as error:
            self._set(ServiceStatus.FAILED, "start_failed", str(error))
            raise
        self._watch = asyncio.create_task(self._keep_alive(), name=f"watch-{self.name}")

    async def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after the grace period; idempotent."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        process = self._process
        if process is not None and process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.spec.stop_grace_s):
                    await process.wait()
            except TimeoutError:
                log.warning("service_killed", service=self.name, grace_s=self.spec.stop_grace_s)
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        await self._reap()
        self._set(ServiceStatus.STOPPED, "stopped", None)

    async def restart(self) -> None:
        """Stop, then start again (an operator's request, not a crash)."""
        self._set(ServiceStatus.RESTARTING, "restart_requested", "restart requested")
        await self.stop()
        self.restarts += 1
        await self.start()

    # Internals -------------------------------------------------------------------
    async def _launch_until_ready(self) -> None:
        spec = self.spec
        if spec.before_start is not None:
            await spec.before_start()
        if spec.port is not None and port_in_use(spec.port):
            raise ServiceStartError(
                f"{spec.name}: port {spec.port} is already in use by another process; stop it "
                "or move the service's base_port (EMP_SERVICE_MAPPING)"
            )
        self._set(ServiceStatus.STARTING, "starting", None)
        self._last_lines.clear()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *spec.command,
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=PIPE_LIMIT_BYTES,
            )
        except OSError as error:
            raise ServiceStartError(
                f"{spec.name}: cannot run {spec.command[0]!r} ({error.strerror}); install it, "
                "fix its command in the service mapping, or use EMP_MACHINE_SERVICES=fake"
            ) from error
        process = self._process
        assert process.stdout is not None
        assert process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(process.stdout)),
            asyncio.create_task(self._read(process.stderr)),
        ]
        log.info("service_spawned", service=spec.name, pid=process.pid)
        await self._wait_ready(process)
        self._set(ServiceStatus.RUNNING, "ready", None)

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> None:
        spec = self.spec
        exited = asyncio.ensure_future(process.wait())
        deadline = time.monotonic() + spec.start_timeout_s
        interval = PROBE_INTERVAL_MIN_S
        try:
            while True:
                if exited.done():
                    await self._reap()
                    raise ServiceStartError(
                        f"{spec.name} exited with status {process.returncode} before it was "
                        f"ready; last output: {' | '.join(self._last_lines) or '(none)'}"
                    )
                if await spec.probe() and process.returncode is None:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    _signal_group(process.pid, signal.SIGKILL)
                    await process.wait()
                    await self._reap()
                    raise ServiceStartError(
                        f"{spec.name} was not ready within {spec.start_timeout_s} s; "
                        "read its log, or raise its start_timeout_s"
                    )
                # Woken at once if the child dies; otherwise probe again a little later.
                await asyncio.wait({exited}, timeout=min(interval, remaining))
                interval = min(interval * 2, PROBE_INTERVAL_MAX_S)
        finally:
            if not exited.done():
                exited.cancel()

    async def _keep_alive(self) -> None:
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            await self._reap()
            if self._stopping:
                return
            if self.spec.after_crash is not None:
                await self.spec.after_crash()
            now = time.monotonic()
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.policy.crash_loop_window_s:
                self._crashes.popleft()
            if len(self._crashes) >= self.policy.crash_loop_count:
                self._set(
                    ServiceStatus.FAILED,
                    "crash_loop",
                    f"crashed {len(self._crashes)} times within "
                    f"{self.policy.crash_loop_window_s} s (last exit status {code}); "
                    "not restarted — fix it and restart it from the monitor",
                )
                return
            delay = self.policy.delay_s(len(self._crashes))
            self._set(
                ServiceStatus.RESTARTING,
                "crashed",
                f"exited with status {code}; restarting in {delay:.1f} s",
            )
            await asyncio.sleep(delay)
            self.restarts += 1
            try:
                await self._launch_until_ready()
            except ServiceStartError as error:
                self.detail = str(error)
                log.warning("service_restart_failed", service=self.name, error=str(error))

    async def _reap(self) -> None:
        """After the leader exits: kill what it left in its group, then drain the pipes."""
        process = self._process
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)
        readers, self._readers = self._readers, []
        if readers:
            await asyncio.wait(readers, timeout=self.spec.stop_grace_s)
            for reader in readers:
                reader.cancel()

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                # A line past PIPE_LIMIT_BYTES: its start is dropped, reading goes on.
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._last_lines.append(line)
            self._output(self.name, line)

    def _set(self, status: ServiceStatus, reason: str, detail: str | None) -> None:
        self.status = status
        self.detail = detail
        log.info("service_status", service=self.name, status=str(status), reason=reason)
        self._on_change(self, reason)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
