"""``emp env explain``: where a value came from, layer by layer, secrets masked."""

from __future__ import annotations

import difflib

from emp_queue.env.builder import ProfileBuild
from emp_queue.env.checks import MASK
from emp_queue.env.errors import UnknownVariableError
from emp_queue.env.interfaces import ServiceVariable, service_variables
from emp_queue.env.pool import Definition, references


def _consumers(build: ProfileBuild) -> list[tuple[str, ServiceVariable]]:
    return [
        (service, variable)
        for service in build.profile.profile.services
        for variable in service_variables(service, build.interfaces)
    ]


def _pool_name(build: ProfileBuild, name: str) -> str:
    consumers = _consumers(build)
    for _, variable in consumers:
        if variable.env_name == name:
            return variable.source
    if name in build.pool.definitions:
        return name
    known = {v.env_name for _, v in consumers} | set(build.pool.definitions)
    close = difflib.get_close_matches(name, sorted(known), n=3)
    suggestion = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownVariableError(
        f"{name} is neither a pool variable of profile {build.profile.name!r} nor a variable its "
        f"services read{suggestion} (emp env list shows the components)"
    )


def _masked_sources(build: ProfileBuild) -> set[str]:
    return {v.source for _, v in _consumers(build) if v.secret}


def _raw(build: ProfileBuild, definition: Definition) -> str:
    if definition.origin.from_secrets or definition.name in _masked_sources(build):
        return MASK
    return definition.raw


def _steps(build: ProfileBuild, name: str, indent: str, seen: frozenset[str]) -> list[str]:
    definition = build.pool.winner(name)
    lines = []
    for ref in dict.fromkeys(references(definition.raw, definition.origin)):
        if ref not in build.pool.definitions:
            lines.append(f"{indent}${{{ref}}} ← not defined in this profile")
            continue
        history = build.pool.definitions[ref]
        ref_def = history[-1]
        overrides = "".join(f" (overrides {earlier.origin})" for earlier in history[:-1])
        lines.append(f"{indent}${{{ref}}} ← {ref_def.origin} = {_raw(build, ref_def)}{overrides}")
        if ref not in seen:
            lines.extend(_steps(build, ref, indent + "  ", seen | {ref}))
        else:
            lines.append(f"{indent}  (circular: {ref} again)")
    return lines


def explain(build: ProfileBuild, name: str) -> list[str]:
    """Lines that tell where ``name`` (a service variable or a pool variable) comes from."""
    source = _pool_name(build, name)
    lines = []
    readers: dict[str, list[str]] = {}
    for service, variable in _consumers(build):
        if variable.source == source:
            readers.setdefault(f"{variable.env_name} ({variable.qualified_field})", []).append(
                service
            )
    for reader, services in readers.items():
        lines.append(f"{reader} read by {', '.join(services)} is fed by {source}")
    history = build.pool.definitions.get(source, ())
    if not history:
        lines.append(_undefined(build, source))
        return lines
    resolved = build.resolution.values.get(source)
    secret = source in _masked_sources(build) or (resolved is not None and resolved.secret)
    lines.append(f"{source} in profile {build.profile.name!r}{' (secret)' if secret else ''}:")
    for number, definition in enumerate(history, start=1):
        wins = "  ← wins" if number == len(history) and len(history) > 1 else ""
        overrides = f" (overrides {number - 1})" if number > 1 else ""
        lines.append(
            f"  {number}. {definition.origin} = {_raw(build, definition)}{overrides}{wins}"
        )
    lines.extend(_steps(build, source, "     ", frozenset({source})))
    if resolved is None:
        lines.append("  value: cannot be resolved (see emp env check)")
    else:
        lines.append(f"  value: {MASK if secret else resolved.value}")
    return lines


def _undefined(build: ProfileBuild, source: str) -> str:
    defaults = {
        variable.default
        for _, variable in _consumers(build)
        if variable.source == source and variable.default is not None
    }
    if defaults:
        return (
            f"{source} is not defined in profile {build.profile.name!r}: the services use the "
            f"default {', '.join(sorted(defaults))}"
        )
    return (
        f"{source} is not defined in profile {build.profile.name!r} and has no default: "
        f"`emp env check {build.profile.name}` says where to define it"
    )
