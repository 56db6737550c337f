"""Throughput of five well-known Python Redis job queues, measured on one shared scenario.

For each system: submit ``jobs`` no-op jobs with the library's fastest normal enqueue path
(timed as ``submit_s``), then start one worker process of that library and time until every
job has run (``drain_s``); a job counts as run once its no-op body has INCRed a shared Redis
counter, the same for every system. Each system runs in its own process group with a timeout,
so a crash or hang in one library can't take the others down.

This module only needs the standard library and redis-py, so the project's own runner can
import it; the competitor libraries (bench/requirements.txt) are imported only by the
subprocesses, which may use a different interpreter (``EMP_BENCH_COMPETITOR_PYTHON``) because
arq pins redis-py below 6.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench.competitors._common import URL_ENV

COMPETITORS: tuple[str, ...] = ("arq", "saq", "rq", "dramatiq", "taskiq")
# emp-job-queue itself runs through the same driver, with the project's own interpreter.
OURS = "emp"
PYTHON_ENV = "EMP_BENCH_COMPETITOR_PYTHON"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_BYTECODE_CACHE = _REPO_ROOT / "bench" / ".pycache"
_SHARED_SERVER = ("127.0.0.1", 6379)


@dataclass(frozen=True)
class ThroughputResult:
    system: str
    jobs: int
    submit_s: float
    drain_s: float
    status: str  # "ok" | "timeout" | "error: ..."

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.drain_s if self.drain_s > 0 else 0.0


def competitor_python() -> str:
    """The interpreter that has the competitor libraries installed."""
    return os.environ.get(PYTHON_ENV) or sys.executable


def _is_shared_server(url: str) -> bool:
    parts = urlsplit(url)
    host = "127.0.0.1" if parts.hostname in (None, "localhost", "::1") else parts.hostname
    return (host, parts.port or 6379) == _SHARED_SERVER


def reset_server(url: str, *, owned: bool = False) -> None:
    """FLUSHALL ``url``, which the caller asserts (``owned=True``) is private to this run."""
    if not owned:
        raise PermissionError(f"refusing to flush {url}: pass owned=True for a private server")
    if _is_shared_server(url):
        raise PermissionError(f"refusing to flush {url}: that is the shared server")
    with redis.Redis.from_url(url) as client:
        client.flushall()


def _server_is_empty(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        return int(client.dbsize()) == 0


def _kill_group(process: subprocess.Popen[str]) -> None:
    # The group holds the driver and the worker it started; nothing else joins a new session.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _run_driver(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str, str]:
    """Run the driver in its own session; returns (returncode, stdout, stderr), -1 on timeout."""
    process = subprocess.Popen(
        argv,
        cwd=_REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        return -1, stdout, stderr
    _kill_group(process)  # reaps a worker the driver failed to stop
    return process.returncode, stdout, stderr


def _error(name: str, jobs: int, message: str) -> ThroughputResult:
    return ThroughputResult(name, jobs, 0.0, 0.0, f"error: {message}")


def _parse(name: str, jobs: int, returncode: int, stdout: str, stderr: str) -> ThroughputResult:
    if returncode == -1:
        return ThroughputResult(name, jobs, 0.0, 0.0, "timeout")
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        # The last stderr line is the exception message when the driver died on one.
        last = stderr.strip().splitlines()[-1:] or [f"exit code {returncode}"]
        return _error(name, jobs, last[0])
    timings = json.loads(lines[-1])
    return ThroughputResult(name, jobs, timings["submit_s"], timings["drain_s"], "ok")


def run_competitor(
    name: str,
    redis_url: str,
    jobs: int = 20_000,
    batch: int = 1_000,
    timeout_s: float = 300,
    python: str | None = None,
) -> ThroughputResult:
    """Measure one system against an empty server; the caller empties it between systems."""
    if name not in (*COMPETITORS, OURS):
        raise ValueError(f"unknown system {name!r}; expected one of {(*COMPETITORS, OURS)}")
    if name == OURS:
        python = sys.executable
    # Leftover keys from another run would skew the counter and the queues' own state.
    if not _server_is_empty(redis_url):
        return _error(name, jobs, f"{redis_url} is not empty; call reset_server() first")
    python = python or competitor_python()
    module = f"bench.competitors.{name}_system"
    env = _driver_env(redis_url)
    # Compile the driver's imports first, as an installed package ships them compiled: a worker
    # that compiles its library on start (PYTHONDONTWRITEBYTECODE, set in some shells) would
    # time the compiler, not the queue.
    subprocess.run([python, "-c", f"import {module}"], env=env, cwd=_REPO_ROOT, check=False)
    argv = [python, "-m", module, "drive", "--jobs", str(jobs), "--batch", str(batch)]
    return _parse(name, jobs, *_run_driver(argv, env, timeout_s))


def _driver_env(redis_url: str) -> dict[str, str]:
    """The drivers' environment: the server's URL, and compiled bytecode kept between runs (in
    bench/.pycache) whatever the shell says, for every system alike."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("PYTHONPYCACHEPREFIX", str(_BYTECODE_CACHE))
    env[URL_ENV] = redis_url
    return env
