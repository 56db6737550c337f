"""The API over the test namespace: in process (httpx ASGITransport) or on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.storage import StorageSettings

TEST_SERVICES = ["sim", "s", "other", "comfyui", "nobody-serves-this"]
"""Services the tests submit to before (or without) any worker serving them."""


@dataclass(frozen=True)
class ApiKeys:
    """One secret per kind of caller; ``acme`` and ``globex`` are client keys."""

    admin: str
    worker: str
    acme: str
    globex: str

    def by_role(self) -> dict[str, str]:
        return {"admin": self.admin, "worker": self.worker, "client": self.acme}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def storage_settings(tmp_path: Path) -> StorageSettings:
    """A local asset store in the test's directory (for tests that serve assets)."""
    return StorageSettings(local_dir=tmp_path / "assets", public_url="http://api.test/assets")


@pytest.fixture
def api_settings(storage_settings: StorageSettings) -> ApiSettings:
    return ApiSettings(
        rate_limit_per_s=10_000,
        rate_limit_burst=10_000,
        sweep_interval_s=None,
        key_cache_s=0,
        services=TEST_SERVICES,
        storage=storage_settings,  # never the user's data directory
    )


@pytest.fixture
def core_settings(namespace: str, redis_url: str) -> CoreSettings:
    return CoreSettings(namespace=namespace, redis_url=redis_url)


@pytest.fixture
def app(api_settings: ApiSettings, core_settings: CoreSettings, redis_client: Redis) -> FastAPI:
    return create_app(api_settings, core_settings, redis_client)


@pytest.fixture
async def api_keys(redis_client: Redis, namespace: str) -> ApiKeys:
    store = ApiKeyStore(redis_client, Keys(namespace))
    return ApiKeys(
        admin=(await store.create(Role.ADMIN)).secret,
        worker=(await store.create(Role.WORKER)).secret,
        acme=(await store.create(Role.CLIENT, customer_id="acme")).secret,
        globex=(await store.create(Role.CLIENT, customer_id="globex")).secret,
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


@pytest.fixture
async def admin(client: httpx.AsyncClient, api_keys: ApiKeys) -> httpx.AsyncClient:
    client.headers.update(bearer(api_keys.admin))
    return client


@pytest.fixture
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    """The same app served by a real uvicorn on a free loopback port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task
