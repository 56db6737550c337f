"""pytest fixtures: ``redis_url`` (session), ``redis_client``, ``namespace``, ``job_queue``.

The server is ``EMP_TEST_REDIS_URL`` when set (shared: tests never flush it, each works in
its own namespace and deletes it afterwards), otherwise a private embedded Valkey started
for the session in a temporary directory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.testing.namespaces import delete_namespace, unique_namespace

pytest_plugins = ["emp_queue.testing.fakes.fixtures"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("EMP_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    data_dir: Path = tmp_path_factory.mktemp("valkey")
    with EmbeddedValkey(data_dir) as server:
        yield server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(redis_client: Redis) -> AsyncIterator[str]:
    name = unique_namespace()
    yield name
    await delete_namespace(redis_client, name)


@pytest.fixture
def job_queue(redis_client: Redis, namespace: str) -> JobQueue:
    return JobQueue(redis_client, namespace=namespace)
