"""API keys with a lifetime, and rotation with an overlap: through the API and `emp keys`."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.cli.main import app
from emp_queue.core.keys import Keys
from emp_queue.errors import ConfigurationError
from tests.integration.api.conftest import bearer

LIFE_S = 2.0


async def test_an_expired_key_is_refused_with_when_it_ended(
    client: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    # Two seconds of life: on a loaded machine the first request alone was seen to take longer
    # than the 0.3 s this test used to allow.
    created = time.monotonic()
    short = await store.create(Role.ADMIN, expires_in_s=LIFE_S)
    lasting = await store.create(Role.ADMIN, expires_in_s=3600)

    before = await client.get("/api/queues", headers=bearer(short.secret))
    await asyncio.sleep(max(0.0, created + LIFE_S + 0.2 - time.monotonic()))
    after = await client.get("/api/queues", headers=bearer(short.secret))
    still = await client.get("/api/queues", headers=bearer(lasting.secret))

    assert before.status_code == 200
    assert after.status_code == 401
    assert f"API key {short.key.key_id} expired at" in after.json()["message"]
    assert still.status_code == 200
    with pytest.raises(ConfigurationError, match="positive"):
        await store.create(Role.ADMIN, expires_in_s=0)


async def test_rotation_overlaps_then_only_the_new_key_works(
    client: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    old = await store.create(Role.CLIENT, customer_id="acme", label="acme backend")

    rotated = time.monotonic()
    new, retired = await store.rotate(old.key.key_id, overlap_s=LIFE_S)
    during_old = await client.get("/api/jobs", headers=bearer(old.secret))
    during_new = await client.get("/api/jobs", headers=bearer(new.secret))
    await asyncio.sleep(max(0.0, rotated + LIFE_S + 0.2 - time.monotonic()))
    after_old = await client.get("/api/jobs", headers=bearer(old.secret))
    after_new = await client.get("/api/jobs", headers=bearer(new.secret))
    audit = ApiKeyStore(redis_client, Keys(namespace))
    admin = await audit.create(Role.ADMIN)
    rotations = (
        await client.get(
            "/api/audit", params={"action": "key.rotate"}, headers=bearer(admin.secret)
        )
    ).json()["entries"]

    assert (new.key.role, new.key.customer_id, new.key.label) == (
        Role.CLIENT,
        "acme",
        "acme backend",
    )
    assert new.key.expires_at_ms is None  # the old key never expired: neither does the new
    assert retired.expires_at_ms is not None
    assert (during_old.status_code, during_new.status_code) == (200, 200)
    assert (after_old.status_code, after_new.status_code) == (401, 200)
    assert rotations[0]["target"] == old.key.key_id
    assert rotations[0]["detail"]["new_key_id"] == new.key.key_id


async def test_a_rotated_key_keeps_its_lifetime_and_never_outlives_the_old_end(
    redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    old = await store.create(Role.WORKER, expires_in_s=60)

    new, retired = await store.rotate(old.key.key_id, overlap_s=3600)

    assert old.key.expires_at_ms is not None
    assert retired.expires_at_ms == old.key.expires_at_ms  # not extended by the overlap
    assert new.key.expires_at_ms is not None
    assert new.key.expires_at_ms - new.key.created_at_ms == 60_000


def test_emp_keys_creates_lists_and_rotates_with_lifetimes(redis_url: str, namespace: str) -> None:
    env = {"EMP_REDIS_URL": redis_url, "EMP_NAMESPACE": namespace}
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--role", "admin", "--expires-in-s", "86400"], env=env
    )
    key_id = created.output.split()[3].rstrip(".")
    listed = runner.invoke(app, ["keys", "list"], env=env)
    rotated = runner.invoke(app, ["keys", "rotate", key_id, "--overlap-s", "60"], env=env)
    missing = runner.invoke(app, ["keys", "rotate", "000000000000"], env=env)

    assert created.exit_code == 0, created.output
    assert listed.exit_code == 0, listed.output
    assert "expires" in listed.output
    assert "never" not in listed.output
    assert rotated.exit_code == 0, rotated.output
    assert f"Key {key_id} works until" in rotated.output
    assert rotated.output.split()[-1].startswith("emp_")
    assert missing.exit_code != 0
