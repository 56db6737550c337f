"""The pytest plugin of the testing kit, loaded by pytest through the ``pytest11`` entry point.

A project that installs ``emp-job-queue[testing]`` gets these fixtures with no conftest:

- ``redis_url`` (session): ``EMP_TEST_REDIS_URL`` when set (a shared server: tests never flush
  it, each works in its own namespace and deletes it afterwards), otherwise a private embedded
  Valkey started for the session (one per pytest-xdist worker) in a temporary directory.
- ``redis_client``, ``namespace`` (a fresh key prefix per test, deleted after it), ``job_queue``.
- ``fake_comfyui``, ``fake_ollama``, ``fake_openai``, ``fake_a1111``, ``fake_gemini``,
  ``fake_rest``: each a running fake of the service on a loopback port (``fake.url``).
- ``asset_storage``: local output storage under the test's ``tmp_path``.
- ``api_client``: the API app in process with an admin key and a client key
  (:class:`emp_queue.testing.api_client.ApiClient`), sharing ``asset_storage``'s directory.
- ``worker``: ``async with worker(connector_or_handler) as w`` runs a worker in the test's
  event loop against ``job_queue`` (:func:`emp_queue.testing.worker_runner.run_worker`).

Without pytest-asyncio (the ``testing`` extra) the plugin registers nothing and says so in
pytest's header.
"""

from __future__ import annotations

import importlib.util

import pytest

HAS_ASYNC_SUPPORT = importlib.util.find_spec("pytest_asyncio") is not None

if HAS_ASYNC_SUPPORT:
    pytest_plugins = ["emp_queue.testing.fixtures", "emp_queue.testing.fakes.fixtures"]


def pytest_report_header() -> list[str]:
    if HAS_ASYNC_SUPPORT:
        return []
    return [
        "emp_queue: fixtures disabled, pytest-asyncio is missing; "
        "install 'emp-job-queue[testing]' to use them"
    ]


__all__ = ["HAS_ASYNC_SUPPORT", "pytest"]
