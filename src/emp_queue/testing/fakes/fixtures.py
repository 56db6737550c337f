"""pytest fixtures that yield a running fake (its base URL is ``fake.url``), one per test.

Enable them with ``pytest_plugins = ["emp_queue.testing.fakes.fixtures"]``. Each fake starts
with its defaults; a test changes them through the fake's control API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

# Each fake is imported by its fixture: a run that uses none of them pays for none.
if TYPE_CHECKING:
    from emp_queue.testing.fakes.a1111 import FakeA1111
    from emp_queue.testing.fakes.comfyui import FakeComfyUI
    from emp_queue.testing.fakes.gemini import FakeGemini
    from emp_queue.testing.fakes.ollama import FakeOllama
    from emp_queue.testing.fakes.openai import FakeOpenAI
    from emp_queue.testing.fakes.rest import FakeRest


@pytest_asyncio.fixture
async def fake_comfyui() -> AsyncIterator[FakeComfyUI]:
    from emp_queue.testing.fakes.comfyui import FakeComfyUI

    fake = FakeComfyUI()
    async with fake.running():
        yield fake


@pytest_asyncio.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    from emp_queue.testing.fakes.ollama import FakeOllama

    fake = FakeOllama()
    async with fake.running():
        yield fake


@pytest_asyncio.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    from emp_queue.testing.fakes.openai import FakeOpenAI

    fake = FakeOpenAI()
    async with fake.running():
        yield fake


@pytest_asyncio.fixture
async def fake_llamacpp() -> AsyncIterator[FakeOpenAI]:
    """The OpenAI fake in llama.cpp's profile (:meth:`FakeOpenAI.llamacpp`)."""
    from emp_queue.testing.fakes.openai import FakeOpenAI

    fake = FakeOpenAI.llamacpp()
    async with fake.running():
        yield fake


@pytest_asyncio.fixture
async def fake_a1111() -> AsyncIterator[FakeA1111]:
    from emp_queue.testing.fakes.a1111 import FakeA1111

    fake = FakeA1111()
    async with fake.running():
        yield fake


@pytest_asyncio.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    from emp_queue.testing.fakes.gemini import FakeGemini

    fake = FakeGemini()
    async with fake.running():
        yield fake


@pytest_asyncio.fixture
async def fake_rest() -> AsyncIterator[FakeRest]:
    from emp_queue.testing.fakes.rest import FakeRest

    fake = FakeRest()
    async with fake.running():
        yield fake
