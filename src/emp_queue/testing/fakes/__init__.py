"""Fakes of the AI services that speak their real protocols, on loopback.

``FakeComfyUI``, ``FakeOllama``, ``FakeOpenAI``, ``FakeA1111`` and ``FakeGemini`` hold each
service's state and the controls a test uses to inject failures. ``async with fake.running()
as url`` serves one in-process on a free port; ``python -m emp_queue.testing.fakes comfyui
--port 8188`` runs one in the foreground; ``emp_queue.testing.fakes.fixtures`` has the pytest
fixtures.

The names below are imported when first used: pytest loads the fixtures module of this package
at start-up in every test run of a project that has the testing kit, and a run that uses no fake
must not pay for importing them all (and the API's server code they run on).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emp_queue.api.serving import serve_in_process
    from emp_queue.testing.fakes.a1111 import FakeA1111
    from emp_queue.testing.fakes.comfyui import FakeComfyUI
    from emp_queue.testing.fakes.gemini import FakeGemini
    from emp_queue.testing.fakes.ollama import FakeOllama
    from emp_queue.testing.fakes.openai import FakeOpenAI
    from emp_queue.testing.fakes.server import FakeService

_HOMES = {
    "FakeA1111": "emp_queue.testing.fakes.a1111",
    "FakeComfyUI": "emp_queue.testing.fakes.comfyui",
    "FakeGemini": "emp_queue.testing.fakes.gemini",
    "FakeOllama": "emp_queue.testing.fakes.ollama",
    "FakeOpenAI": "emp_queue.testing.fakes.openai",
    "FakeService": "emp_queue.testing.fakes.server",
    "serve_in_process": "emp_queue.api.serving",
}

__all__ = [
    "FakeA1111",
    "FakeComfyUI",
    "FakeGemini",
    "FakeOllama",
    "FakeOpenAI",
    "FakeService",
    "serve_in_process",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
