"""The machine's processes as one table: built from the plan, started and stopped in order.

Order is the plan's dependency order: daemons start first (together: they do not depend on
each other), workers next; on the way down workers go first (each drains) and daemons
stop last-started first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

import httpx

from emp_queue.machine.plan import DaemonPlan, WorkerPlan
from emp_queue.machine.supervisor import (
    ChangeListener,
    ManagedProcess,
    OutputSink,
    ProcessSpec,
    RestartPolicy,
    ServiceStartError,
    http_probe,
)

DAEMON = "daemon"
WORKER = "worker"
AGENT_ONLY_PREFIX = "EMP_MACHINE_"
"""The agent's own settings (its health key among them): no child needs them."""


def child_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a child inherits: the agent's, less the agent's own settings."""
    return {
        name: value for name, value in environ.items() if not name.startswith(AGENT_ONLY_PREFIX)
    }


def daemon_spec(
    daemon: DaemonPlan, environ: Mapping[str, str], http: httpx.AsyncClient, stop_grace_s: float
) -> ProcessSpec:
    return ProcessSpec(
        name=daemon.name,
        kind=DAEMON,
        command=daemon.command,
        env={**child_environ(environ), "PYTHONUNBUFFERED": "1", **daemon.env},
        cwd=daemon.cwd,
        probe=http_probe(http, daemon.ready_url),
        start_timeout_s=daemon.start_timeout_s,
        stop_grace_s=stop_grace_s,
        port=daemon.port,
        gpu=daemon.gpu,
    )


def worker_spec(
    worker: WorkerPlan,
    *,
    launcher: Sequence[str],
    environ: Mapping[str, str],
    probe: Callable[[], Awaitable[bool]],
    before_start: Callable[[], Awaitable[None]],
    after_crash: Callable[[], Awaitable[None]],
    start_timeout_s: float,
    stop_grace_s: float,
) -> ProcessSpec:
    return ProcessSpec(
        name=worker.name,
        kind=WORKER,
        command=[*launcher, *worker.arguments],
        env={**child_environ(environ), **worker.env},
        probe=probe,
        start_timeout_s=start_timeout_s,
        stop_grace_s=stop_grace_s,
        gpu=worker.gpu,
        before_start=before_start,
        after_crash=after_crash,
    )


class ProcessTable:
    def __init__(self, policy: RestartPolicy, output: OutputSink, on_change: ChangeListener):
        self.policy = policy
        self._output = output
        self._on_change = on_change
        self._by_name: dict[str, ManagedProcess] = {}

    def __getitem__(self, name: str) -> ManagedProcess:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def values(self) -> list[ManagedProcess]:
        return list(self._by_name.values())

    def of_kind(self, kind: str) -> list[ManagedProcess]:
        return [p for p in self._by_name.values() if p.spec.kind == kind]

    def add(self, spec: ProcessSpec) -> None:
        self._by_name[spec.name] = ManagedProcess(
            spec, self.policy, output=self._output, on_change=self._on_change
        )

    async def start(self, names: Sequence[str]) -> None:
        """Start these together; every failure is reported, not only the first."""
        results = await asyncio.gather(
            *(self._by_name[name].start() for name in names), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        for error in errors:
            if not isinstance(error, ServiceStartError):
                raise error
        if errors:
            raise ServiceStartError("; ".join(str(error) for error in errors))

    async def stop_all(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.of_kind(WORKER)))
        for daemon in reversed(self.of_kind(DAEMON)):
            await daemon.stop()

    async def restart_all(self) -> None:
        await self.stop_all()
        for kind in (DAEMON, WORKER):
            await self.start([p.name for p in self.of_kind(kind)])
