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

Without pytest-asyncio or the server parts (both come with the ``testing`` extra) the plugin
registers nothing and says so in pytest's header: a client-only install with pytest around
must not break the user's own test runs.
"""

from __future__ import annotations

import importlib.util

import pytest

from emp_queue.server_parts import missing_server_modules

HAS_ASYNC_SUPPORT = importlib.util.find_spec("pytest_asyncio") is not None
MISSING_SERVER_MODULES = missing_server_modules()
FIXTURES_ENABLED = HAS_ASYNC_SUPPORT and not MISSING_SERVER_MODULES

if FIXTURES_ENABLED:
    pytest_plugins = ["emp_queue.testing.fixtures", "emp_queue.testing.fakes.fixtures"]


def pytest_report_header() -> list[str]:
    if FIXTURES_ENABLED:
        return []
    missing = [*MISSING_SERVER_MODULES, *([] if HAS_ASYNC_SUPPORT else ["pytest_asyncio"])]
    return [
        f"emp_queue: fixtures disabled, {', '.join(missing)} missing; "
        "install 'emp-job-queue[testing]' to use them"
    ]


__all__ = ["FIXTURES_ENABLED", "HAS_ASYNC_SUPPORT", "pytest"]
