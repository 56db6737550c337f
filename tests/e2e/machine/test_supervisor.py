"""ManagedProcess with real child processes: readiness, crashes, backoff, crash loops, stops."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import psutil
import pytest

from emp_queue.machine.supervisor import (
    ManagedProcess,
    ProcessSpec,
    RestartPolicy,
    ServiceStartError,
    http_probe,
)
from emp_queue.machine_models import ServiceStatus

CHILDREN = str(Path(__file__).with_name("children.py"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def never_ready() -> bool:
    return False


async def always_ready() -> bool:
    return True


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.changes: list[tuple[ServiceStatus, str]] = []
        self.times: list[tuple[str, float]] = []
        self.changed = asyncio.Event()

    def output(self, service: str, line: str) -> None:
        self.lines.append((service, line))

    def on_change(self, process: ManagedProcess, reason: str) -> None:
        self.changes.append((process.status, reason))
        self.times.append((reason, time.monotonic()))
        self.changed.set()

    async def wait_for(self, reason: str, timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not any(r == reason for _, r in self.changes):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=1.0) as client:
        yield client


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def make(recorder: Recorder) -> AsyncIterator[Callable[..., ManagedProcess]]:
    made: list[ManagedProcess] = []

    def factory(
        *args: str, probe=always_ready, policy: RestartPolicy | None = None, **spec: object
    ) -> ManagedProcess:
        values: dict[str, object] = {"start_timeout_s": 10.0, "stop_grace_s": 2.0} | spec
        process = ManagedProcess(
            ProcessSpec(
                name="svc",
                kind="daemon",
                command=[sys.executable, CHILDREN, *args],
                env={"PATH": "/usr/bin:/bin"},
                probe=probe,
                **values,  # type: ignore[arg-type]
            ),
            policy or RestartPolicy(backoff_s=0.2, backoff_max_s=1.0),
            output=recorder.output,
            on_change=recorder.on_change,
        )
        made.append(process)
        return process

    yield factory
    for process in made:
        await process.stop()


async def test_running_only_once_the_probe_answers(make, http, recorder) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/system_stats"
    process = make("serve", str(port), "--delay-s", "1.0", probe=http_probe(http, url), port=port)
    started = time.monotonic()
    await process.start()
    assert time.monotonic() - started >= 1.0
    assert process.status is ServiceStatus.RUNNING
    assert (await http.get(url)).status_code == 200
    assert [s for s, _ in recorder.changes] == [ServiceStatus.STARTING, ServiceStatus.RUNNING]
    assert ("svc", "listening on " + str(port)) in recorder.lines


async def test_exit_before_ready_fails_with_its_last_output(make) -> None:
    process = make("crash", probe=never_ready)
    with pytest.raises(ServiceStartError, match=r"exited with status 3 .*Traceback"):
        await process.start()
    assert process.status is ServiceStatus.FAILED


async def test_start_timeout_kills_the_child(make) -> None:
    process = make("stubborn", probe=never_ready, start_timeout_s=0.5)
    with pytest.raises(ServiceStartError, match=r"not ready within 0.5 s"):
        await process.start()
    assert process.pid is None


async def test_busy_port_is_refused_before_spawning(make) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = make("serve", str(port), port=port)
        with pytest.raises(ServiceStartError, match=f"port {port} is already in use"):
            await process.start()


async def test_crash_is_restarted_after_a_growing_backoff(make, recorder) -> None:
    policy = RestartPolicy(backoff_s=0.3, backoff_max_s=5.0, crash_loop_count=10)
    process = make("crash", "--after-s", "0.2", policy=policy)
    await process.start()
    async with asyncio.timeout(20):
        while [r for r, _ in recorder.times].count("crashed") < 2 or process.restarts < 2:
            recorder.changed.clear()
            await recorder.changed.wait()
    events = recorder.times
    crashes = [t for r, t in events if r == "crashed"]
    # Each relaunch ("starting") after the first comes a backoff after its crash: 0.3 s, 0.6 s.
    relaunches = [t for r, t in events if r == "starting"][1:]
    assert relaunches[0] - crashes[0] >= 0.3
    assert relaunches[1] - crashes[1] >= 0.6
    assert process.restarts >= 2


async def test_crash_loop_marks_the_service_failed(make, recorder) -> None:
    policy = RestartPolicy(backoff_s=0.05, backoff_max_s=0.1, crash_loop_count=3)
    process = make("crash", "--after-s", "0.1", policy=policy)
    await process.start()
    await recorder.wait_for("crash_loop")
    assert process.status is ServiceStatus.FAILED
    assert process.restarts == 2
    assert process.detail is not None
    assert "crashed 3 times" in process.detail


async def test_stop_escalates_to_sigkill_after_the_grace(make, recorder) -> None:
    async def ignoring_sigterm() -> bool:
        return ("svc", "ignoring SIGTERM") in recorder.lines

    process = make("stubborn", stop_grace_s=0.5, probe=ignoring_sigterm)
    await process.start()
    pid = process.pid
    assert pid is not None
    started = time.monotonic()
    await process.stop()
    assert 0.5 <= time.monotonic() - started < 5
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert process.status is ServiceStatus.STOPPED


async def test_stop_reaches_the_whole_process_group(make, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    process = make("parent", str(pidfile))
    await process.start()
    async with asyncio.timeout(10):
        while True:
            if pidfile.exists() and pidfile.read_text():
                break
            await asyncio.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert psutil.pid_exists(grandchild)
    await process.stop()
    async with asyncio.timeout(5):
        while psutil.pid_exists(grandchild):
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
            await asyncio.sleep(0.05)


async def test_restart_on_request_gives_a_new_process(make, recorder) -> None:
    process = make("chatty")
    await process.start()
    before = process.pid
    await process.restart()
    assert process.status is ServiceStatus.RUNNING
    assert process.pid not in (None, before)
    assert process.restarts == 1
    reasons = [reason for _, reason in recorder.changes]
    assert reasons[-4:] == ["restart_requested", "stopped", "starting", "ready"]
