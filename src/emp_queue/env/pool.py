"""The variable pool: every layered definition of a profile and their ``${VAR}`` resolution.

Components' sections are layered in the profile's order, then the secrets file; the last
definition of a name wins and the earlier ones stay in its history for ``emp env explain``.
A value may reference any pool variable with ``${NAME}`` (``$$`` is a literal ``$``); secrets-file
values are literal. A value that depends on a secret is itself secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from emp_queue.env.errors import EnvConfigError, InterpolationError

_TOKEN_RE = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Origin:
    """Where one definition was written: a component section or the secrets file."""

    file: str
    section: str | None
    key: str

    @property
    def from_secrets(self) -> bool:
        return self.section is None

    def __str__(self) -> str:
        if self.section is None:
            return f"{self.file} {self.key}"
        return f"{self.file} [{self.section}] {self.key}"


@dataclass(frozen=True)
class Definition:
    name: str
    raw: str
    origin: Origin
    component: str | None


@dataclass(frozen=True)
class Resolved:
    name: str
    value: str
    definition: Definition
    references: tuple[str, ...]
    secret: bool


@dataclass(frozen=True)
class Pool:
    """Every definition of every variable, in layering order (last one wins)."""

    definitions: Mapping[str, tuple[Definition, ...]]

    def winner(self, name: str) -> Definition:
        return self.definitions[name][-1]


def layer(definitions: Sequence[Definition]) -> Pool:
    """Stack definitions in order; two components defining one name is an error."""
    history: dict[str, list[Definition]] = {}
    for definition in definitions:
        earlier = history.setdefault(definition.name, [])
        owners = {d.component for d in earlier if d.component is not None}
        if definition.component is not None and owners - {definition.component}:
            raise EnvConfigError(
                f"{definition.name} is defined by two components ({earlier[0].origin} and "
                f"{definition.origin}); rename the key in one of them"
            )
        earlier.append(definition)
    return Pool({name: tuple(defs) for name, defs in history.items()})


@dataclass(frozen=True)
class Resolution:
    values: Mapping[str, Resolved]
    problems: tuple[str, ...]


def references(raw: str, origin: Origin) -> tuple[str, ...]:
    """Names referenced by ``${NAME}`` in ``raw``; a malformed reference is an error."""
    names: list[str] = []
    for match in _TOKEN_RE.finditer(raw):
        if match.group(0) == "$$":
            continue
        name = match.group(1)
        if name is None or not _NAME_RE.fullmatch(name):
            raise InterpolationError(
                f"{origin}: malformed reference {match.group(0)!r}; write ${{NAME}} with a "
                f"variable name, or $$ for a literal $",
                chain=(),
            )
        names.append(name)
    return tuple(names)


def _substitute(raw: str, values: Mapping[str, Resolved]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return values[match.group(1)].value

    return _TOKEN_RE.sub(replace, raw)


@dataclass
class _Resolver:
    pool: Pool
    missing_hint: str
    values: dict[str, Resolved] = field(default_factory=dict)
    failed: dict[str, InterpolationError] = field(default_factory=dict)

    def resolve(self, name: str, stack: tuple[str, ...]) -> Resolved:
        if name in self.values:
            return self.values[name]
        if name in self.failed:
            raise self.failed[name]
        if name in stack:
            chain = (*stack[stack.index(name) :], name)
            raise InterpolationError(
                f"circular reference: {' → '.join(chain)}; break the cycle by giving one of "
                f"them a literal value",
                chain=chain,
            )
        try:
            resolved = self._resolve_definition(self.pool.winner(name), (*stack, name))
        except InterpolationError as exc:
            self.failed[name] = exc
            raise
        self.values[name] = resolved
        return resolved

    def _resolve_definition(self, definition: Definition, stack: tuple[str, ...]) -> Resolved:
        if definition.origin.from_secrets:
            return Resolved(definition.name, definition.raw, definition, (), secret=True)
        names = references(definition.raw, definition.origin)
        secret = False
        for ref in names:
            if ref not in self.pool.definitions:
                chain = (*stack, ref)
                raise InterpolationError(
                    f"{definition.origin} references ${{{ref}}}, which is not defined "
                    f"(chain: {' → '.join(chain)}); {self.missing_hint.format(name=ref)}",
                    chain=chain,
                )
            secret = self.resolve(ref, stack).secret or secret
        value = _substitute(definition.raw, self.values)
        return Resolved(definition.name, value, definition, names, secret)


def resolve(pool: Pool, missing_hint: str) -> Resolution:
    """Resolve every variable; ``missing_hint`` (with ``{name}``) says where to define one."""
    resolver = _Resolver(pool, missing_hint)
    problems: dict[int, str] = {}
    for name in sorted(pool.definitions):
        try:
            resolver.resolve(name, ())
        except InterpolationError as exc:
            problems.setdefault(id(exc), str(exc))
    return Resolution(resolver.values, tuple(problems.values()))
