"""Errors of the environment builder, all under :class:`emp_queue.errors.ConfigurationError`."""

from __future__ import annotations

from collections.abc import Sequence

from emp_queue.errors import ConfigurationError


class EnvConfigError(ConfigurationError):
    """The environment configuration is wrong; the message names the file and what to change."""


class ComponentFileError(EnvConfigError):
    """A component or secrets file cannot be read; fix the line or section the message names."""


class ProfileError(EnvConfigError):
    """A profile is missing or malformed; fix ``config/environments/profiles/<name>.toml``."""


class InterpolationError(EnvConfigError):
    """A ``${VAR}`` reference is undefined or circular; the chain names every variable involved.

    Define the missing variable in a section the profile layers (or in the secrets file), or
    break the cycle.
    """

    def __init__(self, message: str, chain: Sequence[str]) -> None:
        self.chain = tuple(chain)
        super().__init__(message)


class UnknownVariableError(EnvConfigError):
    """``emp env explain`` was asked about a variable no layer and no service defines."""


class EnvCheckError(EnvConfigError):
    """A profile failed validation; each line of the message is one problem and its fix.

    Run ``emp env check <profile>`` to list the problems without writing anything.
    """

    def __init__(self, profile: str, problems: Sequence[str]) -> None:
        self.profile = profile
        self.problems = tuple(problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(f"profile {profile!r} has {len(self.problems)} problem(s):\n{lines}")


class PackedEnvError(EnvConfigError):
    """A packed env file cannot be used; rebuild it with ``emp env pack`` or fix the key."""


class PackedEnvKeyError(PackedEnvError):
    """The key is malformed or is not the key the file was packed with; check ``EMP_ENV_KEY``."""


class PackedEnvTamperedError(PackedEnvError):
    """The packed file failed authentication: it was modified or truncated. Rebuild it."""
