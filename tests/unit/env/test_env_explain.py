from __future__ import annotations

import pytest

from emp_queue.env.builder import plan
from emp_queue.env.errors import UnknownVariableError
from emp_queue.env.explain import explain
from emp_queue.env.interfaces import Interfaces
from emp_queue.env.layout import EnvLayout
from tests.unit.env.env_samples import API_TOKEN, REDIS_PASSWORD


def test_explain_shows_layers_overrides_and_interpolation_with_secrets_masked(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    lines = explain(plan(layout, "prod", interfaces=interfaces), "EMP_REDIS_URL")

    assert lines == [
        "EMP_REDIS_URL (FakeCoreSettings.redis_url) read by api is fed by REDIS_URL",
        "REDIS_URL in profile 'prod' (secret):",
        "  1. components/redis.env [default] URL = redis://${REDIS_HOST}:${REDIS_PORT}/0",
        "  2. components/redis.env [prod] URL = rediss://:${REDIS_PASSWORD}@${REDIS_HOST}:"
        "${REDIS_PORT}/0 (overrides 1)  ← wins",
        "     ${REDIS_PASSWORD} ← secrets/.env.secrets.prod REDIS_PASSWORD = ****",
        "     ${REDIS_HOST} ← components/redis.env [prod] HOST = redis.prod.test "
        "(overrides components/redis.env [default] HOST)",
        "     ${REDIS_PORT} ← components/redis.env [default] PORT = 6379",
        "  value: ****",
    ]
    assert REDIS_PASSWORD not in "\n".join(lines)


def test_explain_masks_a_secret_field_even_when_a_component_defines_it(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    lines = explain(plan(layout, "local", interfaces=interfaces), "API_TOKEN")

    assert lines == [
        "EMP_API_TOKEN (FakeApiSettings.token) read by api is fed by API_TOKEN",
        "API_TOKEN in profile 'local' (secret):",
        "  1. components/api.env [local] TOKEN = ****",
        "  value: ****",
    ]


def test_explain_secret_from_secrets_file_never_shows_it(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    text = "\n".join(explain(plan(layout, "prod", interfaces=interfaces), "EMP_API_TOKEN"))

    assert API_TOKEN not in text
    assert "secrets/.env.secrets.prod API_TOKEN = ****" in text


def test_explain_a_defaulted_variable_names_the_default(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    lines = explain(plan(layout, "local", interfaces=interfaces), "EMP_LEASE_S")

    assert lines == [
        "EMP_LEASE_S (FakeCoreSettings.lease_s) read by api is fed by LEASE_S",
        "LEASE_S is not defined in profile 'local': the services use the default 30.0",
    ]


def test_explain_a_public_pool_variable_shows_its_value(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    lines = explain(plan(layout, "local", interfaces=interfaces), "REDIS_PORT")

    assert lines == [
        "REDIS_PORT in profile 'local':",
        "  1. components/redis.env [default] PORT = 6379",
        "  value: 6379",
    ]


def test_explain_unknown_variable_suggests_close_names(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    with pytest.raises(UnknownVariableError, match="did you mean EMP_REDIS_URL"):
        explain(plan(layout, "local", interfaces=interfaces), "EMP_REDIS_UR")
