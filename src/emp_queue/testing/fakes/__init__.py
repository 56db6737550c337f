"""Fakes of the AI services that speak their real protocols, on loopback.

``FakeComfyUI``, ``FakeOllama``, ``FakeOpenAI``, ``FakeA1111`` and ``FakeGemini`` hold each
service's state and the controls a test uses to inject failures. ``async with fake.running()
as url`` serves one in-process on a free port; ``python -m emp_queue.testing.fakes comfyui
--port 8188`` runs one in the foreground; ``emp_queue.testing.fakes.fixtures`` has the pytest
fixtures.
"""

from emp_queue.api.serving import serve_in_process
from emp_queue.testing.fakes.a1111 import FakeA1111
from emp_queue.testing.fakes.comfyui import FakeComfyUI
from emp_queue.testing.fakes.gemini import FakeGemini
from emp_queue.testing.fakes.ollama import FakeOllama
from emp_queue.testing.fakes.openai import FakeOpenAI
from emp_queue.testing.fakes.server import FakeService

__all__ = [
    "FakeA1111",
    "FakeComfyUI",
    "FakeGemini",
    "FakeOllama",
    "FakeOpenAI",
    "FakeService",
    "serve_in_process",
]
