"""How settings classes meet the environment: the variable each field reads, whether it holds
a secret, and a refusal worded in those variables.

pydantic-settings reports an invalid variable by its field (``port``, ``Input should be a
valid integer``) under the class's name; the person who set ``EMP_API_PORT=abc`` needs the
variable's name and what it should be, and never a secret's value. Used by the env builder
(``env/interfaces.py``), the worker's connector settings and ``emp``'s one-line errors; it
needs nothing but pydantic, so a client-only install has it too.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import AliasChoices, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from emp_queue.errors import ConfigurationError

SHOWN_CHARS = 60
"""An invalid value is shown up to this long."""


def env_name(settings: type[BaseSettings], name: str, info: FieldInfo) -> str:
    """The environment variable a field reads: its alias, else the class's prefix + name."""
    alias: object = info.validation_alias or info.alias
    if isinstance(alias, AliasChoices):
        alias = next((choice for choice in alias.choices if isinstance(choice, str)), None)
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(settings.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def is_secret(annotation: Any) -> bool:
    """Whether a field's type holds a secret (``SecretStr``/``SecretBytes``, optional or not)."""
    if annotation in (SecretStr, SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return is_secret(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(is_secret(arg) for arg in typing.get_args(annotation))
    return False


def describe_invalid_settings(error: ValidationError) -> str | None:
    """One line naming each invalid variable and its problem; None when ``error`` is not a
    settings class's (a request's or a model's validation, say)."""
    problems = _problems(error)
    return None if problems is None else f"invalid settings: {problems}"


def invalid_settings(error: ValidationError, purpose: str = "") -> ConfigurationError:
    """The project's error for a settings class that refused its environment (``purpose``:
    what the settings were for, as "for placement")."""
    problems = _problems(error) or str(error)
    return ConfigurationError(f"invalid settings{' ' if purpose else ''}{purpose}: {problems}")


def _problems(error: ValidationError) -> str | None:
    settings = _settings_class(error.title)
    if settings is None:
        return None
    problems = []
    for item in error.errors():
        location = item.get("loc", ())
        info = settings.model_fields.get(str(location[0])) if location else None
        if info is None:  # a rule across variables (a model validator): its message says it
            problems.append(f"{'.'.join(map(str, (error.title, *location)))}: {item['msg']}")
            continue
        name = env_name(settings, str(location[0]), info)
        problems.append(f"{name}{_shown_input(info, item)}: {item['msg']}")
    return "; ".join(problems)


def _settings_class(title: str) -> type[BaseSettings] | None:
    """The loaded settings class of that name (the one that raised is loaded)."""
    pending = list(BaseSettings.__subclasses__())
    while pending:
        settings = pending.pop()
        if settings.__name__ == title:
            return settings
        pending.extend(settings.__subclasses__())
    return None


def _shown_input(info: FieldInfo, item: Any) -> str:
    value = item.get("input")
    if is_secret(info.annotation) or item.get("type") == "missing":
        return ""
    if not isinstance(value, str | int | float | bool):
        return ""
    text = repr(value)
    return f"={text[:SHOWN_CHARS]}{'...' if len(text) > SHOWN_CHARS else ''}"
