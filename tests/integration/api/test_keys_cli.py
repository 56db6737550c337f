"""`emp keys create|list|revoke` against the test server's namespace."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from emp_queue.api.key_store import ApiKey, ApiKeyStore, Role
from emp_queue.cli.main import app
from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys


@pytest.fixture
def env(redis_url: str, namespace: str) -> dict[str, str]:
    return {"EMP_REDIS_URL": redis_url, "EMP_NAMESPACE": namespace}


def emp(env: dict[str, str], *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == exit_code, result.output
    return result.output


def stored_keys(redis_url: str, namespace: str) -> list[ApiKey]:
    async def read() -> list[ApiKey]:
        redis = connect(redis_url)
        try:
            return await ApiKeyStore(redis, Keys(namespace)).list()
        finally:
            await redis.aclose()

    return asyncio.run(read())


def test_create_list_revoke(env: dict[str, str], redis_url: str, namespace: str) -> None:
    created = emp(env, "keys", "create", "--role", "client", "--customer", "acme", "--label", "ci")
    secret = created.split()[-1]
    [key] = stored_keys(redis_url, namespace)

    listed = emp(env, "keys", "list")
    revoked = emp(env, "keys", "revoke", key.key_id)

    assert secret.startswith("emp_")
    assert key.key_id in created
    assert (key.role, key.customer_id, key.label) == (Role.CLIENT, "acme", "ci")
    assert key.key_id in listed
    assert "acme" in listed
    assert secret not in listed
    assert key.key_id in revoked
    assert stored_keys(redis_url, namespace) == []
    assert "No API keys." in emp(env, "keys", "list")


def test_a_client_key_needs_a_customer_and_unknown_ids_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(Exception, match="customer"):
        CliRunner().invoke(
            app, ["keys", "create", "--role", "client"], env=env, catch_exceptions=False
        )
    with pytest.raises(Exception, match="no API key with id 'nope'"):
        CliRunner().invoke(app, ["keys", "revoke", "nope"], env=env, catch_exceptions=False)
