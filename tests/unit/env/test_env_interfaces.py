from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

import emp_queue
from emp_queue.core.settings import CoreSettings
from emp_queue.env.errors import EnvConfigError
from emp_queue.env.interfaces import SERVICE_INTERFACES, service_variables, settings_variables


def _subclasses(cls: type[BaseSettings]) -> set[type[BaseSettings]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _project_settings_classes() -> set[type[BaseSettings]]:
    for module in pkgutil.walk_packages(emp_queue.__path__, "emp_queue."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    return {cls for cls in _subclasses(BaseSettings) if cls.__module__.startswith("emp_queue.")}


def test_every_settings_class_in_the_project_is_a_registered_service_interface() -> None:
    registered = {cls for classes in SERVICE_INTERFACES.values() for cls in classes}

    unregistered = {
        f"{cls.__module__}.{cls.__qualname__}" for cls in _project_settings_classes() - registered
    }

    assert unregistered == set(), (
        "add these settings classes to emp_queue.env.interfaces.SERVICE_INTERFACES"
    )
    assert CoreSettings in registered


def test_each_env_name_is_defined_by_exactly_one_settings_class() -> None:
    owners: dict[str, set[str]] = {}
    for cls in {cls for classes in SERVICE_INTERFACES.values() for cls in classes}:
        for variable in settings_variables(cls):
            owners.setdefault(variable.env_name, set()).add(cls.__qualname__)

    assert {name: o for name, o in owners.items() if len(o) > 1} == {}


def test_core_settings_are_fed_by_the_redis_and_queue_components() -> None:
    variables = {v.env_name: v for v in settings_variables(CoreSettings)}

    assert variables["EMP_REDIS_URL"].source == "REDIS_URL"
    assert variables["EMP_LEASE_S"].source == "QUEUE_LEASE_S"
    assert variables["EMP_NAMESPACE"].source == "QUEUE_NAMESPACE"
    assert variables["EMP_LEASE_S"].default == "30.0"
    assert variables["EMP_DATA_DIR"].default == "computed by default_data_dir()"
    assert not any(v.required or v.secret for v in variables.values())


class _ExampleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMP_EXAMPLE_")

    token: SecretStr
    maybe_token: SecretStr | None = None
    annotated_token: Annotated[SecretStr, Field(min_length=1)] = SecretStr("x")
    port: int = 1
    queue_lease_s: float = Field(default=1.0, json_schema_extra={"env_source": "QUEUE_LEASE_S"})
    api_key: str = Field(default="", validation_alias="OPENAI_API_KEY")


class _ClashingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMP_EXAMPLE_")

    port: int = 2


def test_variables_say_required_secret_default_and_source() -> None:
    variables = {v.env_name: v for v in settings_variables(_ExampleSettings)}

    assert variables["EMP_EXAMPLE_TOKEN"].required is True
    assert variables["EMP_EXAMPLE_TOKEN"].secret is True
    assert variables["EMP_EXAMPLE_TOKEN"].source == "EXAMPLE_TOKEN"
    assert variables["EMP_EXAMPLE_MAYBE_TOKEN"].secret is True
    assert variables["EMP_EXAMPLE_ANNOTATED_TOKEN"].secret is True
    assert variables["EMP_EXAMPLE_PORT"].secret is False
    assert variables["EMP_EXAMPLE_PORT"].default == "1"
    assert variables["EMP_EXAMPLE_QUEUE_LEASE_S"].source == "QUEUE_LEASE_S"
    assert variables["OPENAI_API_KEY"].source == "OPENAI_API_KEY"


def test_two_classes_of_one_service_reading_one_variable_is_an_error() -> None:
    interfaces = {"api": (_ExampleSettings, _ClashingSettings)}

    with pytest.raises(EnvConfigError, match="reads EMP_EXAMPLE_PORT from both"):
        service_variables("api", interfaces)


def test_unknown_service_lists_the_known_ones() -> None:
    with pytest.raises(EnvConfigError, match="unknown service 'gpu'; known services: api"):
        service_variables("gpu", {"api": (_ExampleSettings,)})


def test_env_source_must_be_a_name() -> None:
    class Bad(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="EMP_")
        x: int = Field(default=1, json_schema_extra={"env_source": ""})

    with pytest.raises(EnvConfigError, match="env_source of EMP_X must be a non-empty"):
        settings_variables(Bad)
