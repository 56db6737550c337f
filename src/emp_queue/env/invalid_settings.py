"""A settings class refusing its environment, in the variables' own names.

pydantic-settings reports an invalid variable by its field (``port``, ``Input should be a
valid integer``) under the class's name; the person who set ``EMP_API_PORT=abc`` needs the
variable's name and what it should be. Secrets' values are never shown.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from emp_queue.env.interfaces import SERVICE_INTERFACES, ServiceVariable, settings_variables
from emp_queue.errors import ConfigurationError

SHOWN_CHARS = 60
"""An invalid value is shown up to this long."""


def describe_invalid_settings(error: ValidationError) -> str | None:
    """One line naming each invalid variable and its problem; None when ``error`` is not a
    registered settings class's (a request's or a model's validation, say)."""
    settings = _registered().get(error.title)
    if settings is None:
        return None
    variables = {variable.field_name: variable for variable in settings_variables(settings)}
    problems = []
    for item in error.errors():
        location = item.get("loc", ())
        variable = variables.get(str(location[0])) if location else None
        name = variable.env_name if variable else ".".join(map(str, (error.title, *location)))
        problems.append(f"{name}{_shown_input(variable, item)}: {item['msg']}")
    return "invalid settings: " + "; ".join(problems)


def invalid_settings(error: ValidationError, purpose: str = "") -> ConfigurationError:
    """The project's error for a settings class that refused its environment (``purpose``:
    what the settings were for, as "for placement")."""
    described = describe_invalid_settings(error) or f"invalid settings: {error}"
    if purpose:
        described = described.replace("invalid settings:", f"invalid settings {purpose}:", 1)
    return ConfigurationError(described)


def _registered() -> dict[str, type[BaseSettings]]:
    return {
        settings.__name__: settings
        for classes in SERVICE_INTERFACES.values()
        for settings in classes
    }


def _shown_input(variable: ServiceVariable | None, item: Any) -> str:
    value = item.get("input")
    if variable is None or variable.secret or item.get("type") == "missing":
        return ""
    if not isinstance(value, str | int | float | bool):
        return ""
    text = repr(value)
    return f"={text[:SHOWN_CHARS]}{'...' if len(text) > SHOWN_CHARS else ''}"
