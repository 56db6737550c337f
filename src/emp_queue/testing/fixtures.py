"""The kit's core fixtures (see :mod:`emp_queue.testing.pytest_plugin` for the list).

The API and the worker are imported by the fixtures that use them, not here: pytest loads this
module in every run of a project that installs the kit, most of which never start an API.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.testing.namespaces import delete_namespace, unique_namespace

if TYPE_CHECKING:
    from emp_queue.storage import AssetStorage
    from emp_queue.testing.api_client import ApiClient
    from emp_queue.worker.runtime import Worker

WorkerFactory = Callable[..., contextlib.AbstractAsyncContextManager["Worker"]]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("EMP_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    data_dir: Path = tmp_path_factory.mktemp("valkey")
    with EmbeddedValkey(data_dir) as server:
        yield server.url


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def namespace(redis_client: Redis) -> AsyncIterator[str]:
    name = unique_namespace()
    yield name
    await delete_namespace(redis_client, name)


@pytest.fixture
def job_queue(redis_client: Redis, namespace: str) -> JobQueue:
    return JobQueue(redis_client, namespace=namespace)


@pytest.fixture
def assets_dir(tmp_path: Path) -> Path:
    return tmp_path / "assets"


@pytest.fixture
def asset_storage(assets_dir: Path) -> AssetStorage:
    from emp_queue.storage.settings import build_asset_storage
    from emp_queue.testing.api_client import local_storage_settings

    return build_asset_storage(local_storage_settings(assets_dir))


@pytest_asyncio.fixture
async def api_client(
    redis_client: Redis, namespace: str, redis_url: str, assets_dir: Path
) -> AsyncIterator[ApiClient]:
    from emp_queue.testing.api_client import api_client_for

    async with api_client_for(redis_client, namespace, redis_url, assets_dir) as client:
        yield client


@pytest.fixture
def worker(job_queue: JobQueue, asset_storage: AssetStorage) -> WorkerFactory:
    from emp_queue.testing.worker_runner import run_worker

    def start(target: Any, **options: Any) -> contextlib.AbstractAsyncContextManager[Worker]:
        """``target``: a ``Connector`` or an ``async def handler(context)``."""
        options.setdefault("storage", asset_storage)
        return run_worker(job_queue, target, **options)

    return start
