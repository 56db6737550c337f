"""Run a fake as `python -m emp_queue.testing.fakes NAME` and stop it with a signal."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx


async def serve_then_stop(service: str, probe: str, stop: signal.Signals) -> str:
    """Start the fake in the foreground, GET ``probe`` from it, send ``stop``; returns the
    banner it printed. Fails unless the probe answered 200 and the process exited 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emp_queue.testing.fakes", service, "--port", "0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(15):
            banner = (await process.stdout.readline()).decode()
        url = banner.rsplit(" ", 1)[-1].strip()
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get(probe)).status_code == 200
        process.send_signal(stop)
        async with asyncio.timeout(5):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return banner
