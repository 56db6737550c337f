"""Service interfaces: the pydantic-settings classes each service reads.

The settings classes are the only definition of a service's variables: their fields say which
are required, defaulted or secret (typed ``SecretStr``/``SecretBytes``). The pool variable that
feeds a field is named by the field's ``json_schema_extra={"env_source": "POOL_NAME"}`` or, by
default, by its env name without the project prefix ``EMP_`` (``EMP_REDIS_URL`` ← ``REDIS_URL``,
``EMP_API_PORT`` ← ``API_PORT``). See docs/decisions/0002-env-builder-mapping.md.

To give a service a new settings class, add it to its tuple in ``SERVICE_INTERFACES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from emp_queue.api.settings import ApiSettings
from emp_queue.client.settings import ClientSettings
from emp_queue.connectors.a1111 import A1111Config
from emp_queue.connectors.base import ConnectorConfig
from emp_queue.connectors.comfyui import ComfyUIConfig
from emp_queue.connectors.gemini import GeminiConfig
from emp_queue.connectors.ollama import OllamaConfig
from emp_queue.connectors.openai import OpenAIConfig
from emp_queue.connectors.rest import RestConfig
from emp_queue.connectors.simulation import SimulationConfig
from emp_queue.core.settings import CoreSettings
from emp_queue.env.errors import EnvConfigError
from emp_queue.hardware import HardwareSettings
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.machine.placement_deletes import A1111FilesSettings
from emp_queue.machine.settings import MachineSettings
from emp_queue.settings_env import env_name, is_secret
from emp_queue.stack.local import LocalStackSettings
from emp_queue.storage.settings import StorageSettings
from emp_queue.telemetry.tracing import TracingSettings
from emp_queue.webhooks.settings import WebhookSettings
from emp_queue.worker.settings import WorkerProcessSettings

ENV_SOURCE_KEY = "env_source"
PROJECT_ENV_PREFIX = "EMP_"

Interfaces = Mapping[str, tuple[type[BaseSettings], ...]]

SERVICE_INTERFACES: Interfaces = {
    "api": (CoreSettings, ApiSettings, StorageSettings, WebhookSettings, TracingSettings),
    "worker": (
        CoreSettings,
        WorkerProcessSettings,
        HardwareSettings,
        StorageSettings,
        ConnectorConfig,
        SimulationConfig,
        ComfyUIConfig,
        OllamaConfig,
        OpenAIConfig,
        A1111Config,
        GeminiConfig,
        RestConfig,
        TracingSettings,
    ),
    "machine": (
        CoreSettings,
        MachineSettings,
        HardwareSettings,
        ComponentSettings,
        A1111FilesSettings,
    ),
    "cli": (ClientSettings, LocalStackSettings),
}


@dataclass(frozen=True)
class ServiceVariable:
    """One variable a service reads, and the pool variable that feeds it."""

    settings: type[BaseSettings]
    field_name: str
    env_name: str
    source: str
    secret: bool
    required: bool
    default: str | None

    @property
    def qualified_field(self) -> str:
        return f"{self.settings.__name__}.{self.field_name}"


def _source(settings: type[BaseSettings], env_name: str, info: FieldInfo) -> str:
    """The pool variable feeding a field: its ``env_source``, else its env name minus ``EMP_``."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and ENV_SOURCE_KEY in extra:
        source = extra[ENV_SOURCE_KEY]
        if not isinstance(source, str) or not source:
            raise EnvConfigError(
                f"{settings.__name__}: json_schema_extra env_source of {env_name} must be a "
                f"non-empty pool variable name, not {source!r}"
            )
        return source
    return env_name.removeprefix(PROJECT_ENV_PREFIX)


def _default(info: FieldInfo) -> str | None:
    if info.is_required():
        return None
    if info.default_factory is not None:
        return f"computed by {getattr(info.default_factory, '__name__', 'a factory')}()"
    return repr(info.default)


def settings_variables(settings: type[BaseSettings]) -> tuple[ServiceVariable, ...]:
    variables: list[ServiceVariable] = []
    for name, info in settings.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            # A nested settings object reads its own prefix (ApiSettings.storage reads
            # EMP_STORAGE_*); its class is registered with the service in its own right.
            continue
        variable = env_name(settings, name, info)
        variables.append(
            ServiceVariable(
                settings=settings,
                field_name=name,
                env_name=variable,
                source=_source(settings, variable, info),
                secret=is_secret(info.annotation),
                required=info.is_required(),
                default=_default(info),
            )
        )
    return tuple(variables)


def known_services(
    interfaces: Interfaces = SERVICE_INTERFACES,
) -> list[str]:
    return sorted(interfaces)


def service_variables(
    service: str,
    interfaces: Interfaces = SERVICE_INTERFACES,
) -> tuple[ServiceVariable, ...]:
    """Every variable ``service`` reads; an env name claimed by two classes is an error."""
    if service not in interfaces:
        raise EnvConfigError(
            f"unknown service {service!r}; known services: {', '.join(known_services(interfaces))}"
            f" (register its settings class in emp_queue.env.interfaces.SERVICE_INTERFACES)"
        )
    seen: dict[str, ServiceVariable] = {}
    for settings in interfaces[service]:
        for variable in settings_variables(settings):
            other = seen.get(variable.env_name)
            if other is not None:
                raise EnvConfigError(
                    f"service {service!r} reads {variable.env_name} from both "
                    f"{other.qualified_field} and {variable.qualified_field}; define it once"
                )
            seen[variable.env_name] = variable
    return tuple(seen.values())
