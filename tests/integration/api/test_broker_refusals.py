"""A broker that answers but refuses writes (out of memory, a read-only replica) gets a 503
(an `error` on a client socket) that says what to fix, and the API serves again once it is
fixed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from emp_queue.core.broker import EmbeddedValkey
from tests.integration.api.conftest import ApiKeys
from tests.integration.api.test_websockets import client_socket, receive, send


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of this module's own: the tests change its memory limit and its role."""
    with EmbeddedValkey(tmp_path_factory.mktemp("refusing"), persistent=False) as server:
        yield server.url


async def out_of_memory(redis: Redis) -> Callable[[], Awaitable[None]]:
    await redis.config_set("maxmemory-policy", "noeviction")
    await redis.config_set("maxmemory", 1)

    async def lift() -> None:
        await redis.config_set("maxmemory", 0)

    return lift


async def read_only_replica(redis: Redis) -> Callable[[], Awaitable[None]]:
    # A replica of a primary that does not exist: it refuses writes (replica-read-only).
    await redis.execute_command("REPLICAOF", "127.0.0.1", "1")

    async def lift() -> None:
        await redis.execute_command("REPLICAOF", "NO", "ONE")

    return lift


@pytest.fixture
async def lifted(redis_client: Redis) -> AsyncIterator[list[Callable[[], Awaitable[None]]]]:
    """The refusals a test started, lifted after it whatever happened."""
    started: list[Callable[[], Awaitable[None]]] = []
    yield started
    for lift in started:
        await lift()


@pytest.mark.parametrize(
    ("refuse", "advice"),
    [(out_of_memory, "raise its maxmemory"), (read_only_replica, "read-only replica")],
)
async def test_a_refusing_broker_is_a_503_that_says_what_to_fix(
    admin: httpx.AsyncClient,
    redis_client: Redis,
    lifted: list[Callable[[], Awaitable[None]]],
    refuse: Callable[[Redis], Awaitable[Callable[[], Awaitable[None]]]],
    advice: str,
) -> None:
    lift = await refuse(redis_client)
    lifted.append(lift)

    refused = await admin.post("/api/jobs", json={"id": "refused-1", "service_required": "sim"})

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    body = refused.json()
    assert body["error"] == "broker_unavailable"
    assert body["message"].startswith("the queue's Redis/Valkey server refused the command")
    assert advice in body["message"]

    await lift()
    again = await admin.post("/api/jobs", json={"id": "refused-1", "service_required": "sim"})
    assert again.status_code == 201
    assert again.json()["id"] == "refused-1"


async def test_a_socket_submit_to_a_refusing_broker_gets_an_error_and_the_socket_stays(
    live_url: str,
    api_keys: ApiKeys,
    redis_client: Redis,
    lifted: list[Callable[[], Awaitable[None]]],
) -> None:
    async with client_socket(live_url, api_keys.acme) as ws:
        lift = await out_of_memory(redis_client)
        lifted.append(lift)
        await send(ws, "submit_job", message_id="ws-refused", service_required="sim")
        refused = await receive(ws)
        await lift()
        await send(ws, "submit_job", message_id="ws-refused", service_required="sim")
        accepted = await receive(ws)

    assert (refused["type"], refused["code"]) == ("error", "broker_unavailable")
    assert refused["message_id"] == "ws-refused"
    assert "raise its maxmemory" in refused["error"]
    assert (accepted["type"], accepted["job_id"]) == ("job_submitted", "ws-refused")
