"""The API in process for tests: the real app over a test namespace, with an admin and a client key.

``async with api_client_for(redis, namespace, redis_url, assets_dir) as api`` yields an
:class:`ApiClient`; ``api.http`` is an ``httpx.AsyncClient`` that calls the ASGI app directly
(no port, no server), and ``api.as_admin`` / ``api.as_client`` are the headers of each key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.connectors.registry import known_connectors
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.storage.settings import StorageSettings
from emp_queue.telemetry.tracing import JobTracing

BASE_URL = "http://api.test"
"""The host the in-process client calls; outputs stored locally are served under it."""
CUSTOMER_ID = "test-customer"


@dataclass(frozen=True)
class ApiClient:
    """An httpx client bound to the in-process API, and the keys it may use."""

    http: httpx.AsyncClient
    admin_key: str
    client_key: str
    customer_id: str

    @property
    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def as_client(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.client_key}"}


def local_storage_settings(assets_dir: Path) -> StorageSettings:
    """Local storage under ``assets_dir``, served by the in-process API at ``BASE_URL``."""
    return StorageSettings(provider="local", local_dir=assets_dir, public_url=f"{BASE_URL}/assets")


@contextlib.asynccontextmanager
async def api_client_for(
    redis: Redis,
    namespace: str,
    redis_url: str,
    assets_dir: Path,
    *,
    customer_id: str = CUSTOMER_ID,
    services: Sequence[str] | None = None,
    tracing: JobTracing | None = None,
) -> AsyncIterator[ApiClient]:
    """Serve the API over ``namespace`` in process. Jobs may name ``services`` (default: every
    installed connector's name) before any worker serving them has registered. With
    ``tracing``, the API records its spans there."""
    settings = ApiSettings(
        rate_limit_per_s=None,
        sweep_interval_s=None,
        key_cache_s=0,
        services=list(known_connectors() if services is None else services),
        storage=local_storage_settings(assets_dir),
    )
    core = CoreSettings(namespace=namespace, redis_url=redis_url)
    app = create_app(settings, core, redis, tracing=tracing)
    keys = ApiKeyStore(redis, Keys(namespace))
    admin = await keys.create(Role.ADMIN, label="pytest admin")
    client = await keys.create(Role.CLIENT, customer_id=customer_id, label="pytest client")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield ApiClient(http, admin.secret, client.secret, customer_id)
