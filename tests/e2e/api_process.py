"""`emp api` as a real process on a loopback port, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

EMP = Path(sys.executable).parent / "emp"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def running_api(
    redis_url: str, namespace: str, extra_env: dict[str, str] | None = None, port: int = 0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``emp api`` serving the service ``sim``; stopped with SIGINT unless the test ended it."""
    port = port or free_port()
    env = {
        **os.environ,
        "EMP_REDIS_URL": redis_url,
        "EMP_NAMESPACE": namespace,
        "EMP_API_PORT": str(port),
        "EMP_API_HOST": "127.0.0.1",
        "EMP_API_SERVICES": '["sim"]',
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [str(EMP), "api"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def wait_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("emp api did not become ready")
