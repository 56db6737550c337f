from __future__ import annotations

import pytest

from emp_queue.env.errors import EnvConfigError, InterpolationError
from emp_queue.env.pool import Definition, Origin, Pool, layer, references, resolve

HINT = "define {name} somewhere"


def _component(name: str, raw: str, section: str = "default", component: str = "app") -> Definition:
    key = name.removeprefix(f"{component.upper()}_")
    return Definition(name, raw, Origin(f"components/{component}.env", section, key), component)


def _secret(name: str, raw: str) -> Definition:
    return Definition(name, raw, Origin("secrets/.env.secrets.prod", None, name), None)


def _pool(*definitions: Definition) -> Pool:
    return layer(definitions)


def test_later_layer_wins_and_history_is_kept() -> None:
    pool = _pool(
        _component("APP_PORT", "8000", "default"), _component("APP_PORT", "9000", "production")
    )

    resolution = resolve(pool, HINT)

    assert resolution.values["APP_PORT"].value == "9000"
    assert [d.origin.section for d in pool.definitions["APP_PORT"]] == ["default", "production"]


def test_interpolation_uses_the_final_layered_values() -> None:
    pool = _pool(
        _component("APP_HOST", "localhost", "default"),
        _component("APP_URL", "http://${APP_HOST}:${APP_PORT}/x", "default"),
        _component("APP_PORT", "80", "default"),
        _component("APP_HOST", "prod.example", "production"),
    )

    resolution = resolve(pool, HINT)

    assert resolution.problems == ()
    assert resolution.values["APP_URL"].value == "http://prod.example:80/x"
    assert resolution.values["APP_URL"].references == ("APP_HOST", "APP_PORT")


def test_double_dollar_is_a_literal_dollar_and_bare_dollar_is_kept() -> None:
    pool = _pool(_component("APP_PRICE", "$$5 and $HOME"))

    assert resolve(pool, HINT).values["APP_PRICE"].value == "$5 and $HOME"


def test_secrets_are_literal_and_taint_what_references_them() -> None:
    pool = _pool(
        _component("APP_URL", "redis://:${APP_PASSWORD}@h"),
        _component("APP_HOST", "h"),
        _secret("APP_PASSWORD", "pa${NOT_A_REF}ss"),
    )

    resolution = resolve(pool, HINT)

    assert resolution.problems == ()
    assert resolution.values["APP_PASSWORD"].value == "pa${NOT_A_REF}ss"
    assert resolution.values["APP_URL"].secret is True
    assert resolution.values["APP_HOST"].secret is False


def test_undefined_reference_names_the_chain_and_the_fix() -> None:
    pool = _pool(
        _component("APP_A", "${APP_B}"),
        _component("APP_B", "x${APP_MISSING}", "production"),
    )

    resolution = resolve(pool, HINT)

    assert resolution.problems == (
        "components/app.env [production] B references ${APP_MISSING}, which is not defined "
        "(chain: APP_A → APP_B → APP_MISSING); define APP_MISSING somewhere",
    )
    assert set(resolution.values) == set()


def test_cycle_is_reported_once_with_its_chain() -> None:
    pool = _pool(
        _component("APP_A", "${APP_B}"),
        _component("APP_B", "${APP_C}"),
        _component("APP_C", "${APP_A}"),
        _component("APP_OK", "fine"),
    )

    resolution = resolve(pool, HINT)

    assert resolution.problems == (
        "circular reference: APP_A → APP_B → APP_C → APP_A; break the cycle by giving one of "
        "them a literal value",
    )
    assert resolution.values["APP_OK"].value == "fine"


def test_self_reference_is_a_cycle() -> None:
    resolution = resolve(_pool(_component("APP_A", "x${APP_A}")), HINT)

    assert resolution.problems == (
        "circular reference: APP_A → APP_A; break the cycle by giving one of them a literal value",
    )


@pytest.mark.parametrize("raw", ["${}", "${1BAD}", "${APP_X", "${APP-X}"])
def test_malformed_reference_is_an_error(raw: str) -> None:
    origin = Origin("components/app.env", "default", "A")

    with pytest.raises(InterpolationError, match="malformed reference"):
        references(raw, origin)


def test_two_components_defining_one_name_is_an_error() -> None:
    with pytest.raises(EnvConfigError, match="defined by two components") as info:
        layer(
            [
                _component("APP_URL", "a", component="app"),
                Definition("APP_URL", "b", Origin("components/other.env", "default", "X"), "other"),
            ]
        )

    assert "components/app.env [default] URL" in str(info.value)
    assert "components/other.env [default] X" in str(info.value)


def test_secrets_file_may_override_a_component_value() -> None:
    pool = _pool(_component("APP_TOKEN", "dev"), _secret("APP_TOKEN", "real"))

    resolved = resolve(pool, HINT).values["APP_TOKEN"]

    assert (resolved.value, resolved.secret) == ("real", True)
