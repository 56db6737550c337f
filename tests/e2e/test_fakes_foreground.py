"""The fakes as programs of their own (``python -m emp_queue.testing.fakes <service>``): they
serve in the foreground and stop on the signal a terminal or a supervisor sends."""

from __future__ import annotations

import signal

from tests.integration.fakes.foreground import serve_then_stop


async def test_the_comfyui_fake_runs_in_the_foreground_until_sigterm() -> None:
    banner = await serve_then_stop("comfyui", "/queue", signal.SIGTERM)
    assert banner.startswith("fake comfyui listening on http://127.0.0.1:")


async def test_the_ollama_fake_runs_in_the_foreground_until_sigint() -> None:
    banner = await serve_then_stop("ollama", "/api/version", signal.SIGINT)
    assert banner.startswith("fake ollama listening on http://127.0.0.1:")
