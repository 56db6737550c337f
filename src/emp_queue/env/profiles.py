"""Profiles: ``config/environments/profiles/<name>.toml``.

A profile names, per component, the sections layered in order (later wins), the services to
build, the secrets file to load and metadata the safety checks use.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emp_queue.env.errors import ProfileError

PROFILE_SUFFIX = ".toml"


class ProfileKind(StrEnum):
    LOCAL = "local"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"

    @property
    def allows_placeholder_secrets(self) -> bool:
        return self in (ProfileKind.LOCAL, ProfileKind.TEST)


class ProfileMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ProfileKind
    description: str = ""
    services: tuple[str, ...] = Field(min_length=1)
    secrets: str = Field(description="Reads secrets/.env.secrets.<secrets>.")
    secrets_required: bool
    production_hosts: tuple[str, ...] = Field(
        default=(),
        description="Host names (fnmatch patterns) that only production profiles may target.",
    )


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    profile: ProfileMeta
    components: dict[str, tuple[str, ...]] = Field(min_length=1)

    @property
    def kind(self) -> ProfileKind:
        return self.profile.kind


def profile_path(directory: Path, name: str) -> Path:
    return directory / f"{name}{PROFILE_SUFFIX}"


def profile_names(directory: Path) -> list[str]:
    return sorted(path.stem for path in directory.glob(f"*{PROFILE_SUFFIX}"))


def load_profile(directory: Path, name: str) -> Profile:
    path = profile_path(directory, name)
    if not path.is_file():
        known = ", ".join(profile_names(directory)) or "none"
        raise ProfileError(f"profile {name!r} not found at {path}; known profiles: {known}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile file {path} is not valid TOML: {exc}") from exc
    try:
        return Profile.model_validate({"name": name, **data})
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ProfileError(
            f"profile file {path} is malformed ({details}); see docs/configuration.md for the "
            f"[profile] and [components] tables"
        ) from None


def load_profiles(directory: Path) -> dict[str, Profile]:
    return {name: load_profile(directory, name) for name in profile_names(directory)}
