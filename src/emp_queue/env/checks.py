"""The problems ``emp env check`` reports, one line each, every line saying what to do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from emp_queue.env.components import Component
from emp_queue.env.interfaces import ServiceVariable
from emp_queue.env.layout import EnvLayout
from emp_queue.env.pool import Pool, Resolution
from emp_queue.env.profiles import Profile
from emp_queue.env.safety import placeholder_reason, production_hosts_hit, production_patterns
from emp_queue.env.service_env import OutputVariable, ServiceEnv
from emp_queue.errors import ConfigurationError

MASK = "****"


@dataclass(frozen=True)
class SourceContext:
    """What a "could be provided by" hint needs to know."""

    layout: EnvLayout
    profile: Profile
    components: Mapping[str, Component]
    secrets_path: Path


def _providers(context: SourceContext, source: str) -> list[str]:
    hints = []
    for name, component in sorted(context.components.items()):
        sections = [
            s for s, values in component.sections.items() if source in _names(component, values)
        ]
        if not sections:
            continue
        shown = ", ".join(f"[{s}]" for s in sections)
        layered = context.profile.components.get(name)
        where = (
            f"the profile layers only {', '.join(f'[{s}]' for s in layered)} of it"
            if layered is not None
            else f"the profile does not layer component {name!r}"
        )
        hints.append(f"{context.layout.display(component.path)} defines it in {shown} but {where}")
    return hints


def _names(component: Component, values: Mapping[str, str]) -> set[str]:
    return {component.pool_name(key) for key in values}


def missing_required_problem(
    services: Sequence[str], variable: ServiceVariable, context: SourceContext
) -> str:
    hints = _providers(context, variable.source)
    if not hints:
        owner = next(
            (
                c
                for c in context.components.values()
                if variable.source.startswith(f"{c.namespace}_")
            ),
            None,
        )
        if owner is not None:
            key = variable.source.removeprefix(f"{owner.namespace}_")
            hints.append(
                f"add {key}=... to a section of {context.layout.display(owner.path)} that the "
                f"profile layers"
            )
        elif not variable.secret:
            hints.append("add it to a component file, or name another source with env_source")
    if variable.secret:
        hints.append(f"put {variable.source}=... in {context.layout.display(context.secrets_path)}")
    return (
        f"{variable.env_name} ({variable.qualified_field}) is required by service(s) "
        f"{', '.join(services)} and fed by {variable.source}, which profile "
        f"{context.profile.name!r} does not define; " + "; or ".join(hints)
    )


def _mask(text: str, outputs: Sequence[OutputVariable]) -> str:
    for out in outputs:
        if out.secret and out.resolved.value:
            text = text.replace(out.resolved.value, MASK)
    return text


def _describe(out: OutputVariable) -> str:
    value = MASK if out.secret else repr(out.resolved.value)
    return (
        f"{out.variable.env_name} = {value} (from {out.variable.source}, "
        f"{out.resolved.definition.origin})"
    )


def validation_problems(service: str, outputs: Sequence[OutputVariable]) -> list[str]:
    """Validate the values against each settings class, as the service itself will."""
    by_class: dict[type[BaseSettings], dict[str, OutputVariable]] = {}
    for out in outputs:
        by_class.setdefault(out.variable.settings, {})[out.variable.field_name] = out
    problems = [
        f"service {service!r}: {_describe(out)} contains '${{', which python-dotenv (the env-file "
        f"reader of pydantic-settings) would expand when the service reads it; change the value"
        for out in outputs
        if "${" in out.resolved.value
    ]
    for settings, fields in by_class.items():
        values = {name: out.resolved.value for name, out in fields.items()}
        try:
            settings.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                if error["type"] == "missing":
                    continue  # reported as a missing required variable
                culprit = fields.get(str(error["loc"][0])) if error["loc"] else None
                subject = _describe(culprit) if culprit else settings.__name__
                message = _mask(error["msg"], outputs)
                problems.append(
                    f"service {service!r}: {subject} is invalid: {message}; fix the value"
                )
        except ConfigurationError as exc:
            problems.append(
                f"service {service!r}: {settings.__name__} rejects the built values: "
                f"{_mask(str(exc), outputs)}"
            )
    return problems


def placeholder_problems(profile: Profile, pool: Pool, resolution: Resolution) -> list[str]:
    """Outside local/test, every secrets-file value must look real."""
    if profile.kind.allows_placeholder_secrets:
        return []
    problems = []
    for name in sorted(pool.definitions):
        origin = pool.winner(name).origin
        resolved = resolution.values.get(name)
        reason = placeholder_reason(resolved.value) if origin.from_secrets and resolved else None
        if reason:
            problems.append(
                f"secret {name} ({origin}) {reason}; profile {profile.name!r} is kind "
                f"{profile.kind} and refuses placeholder secrets — set the real value there"
            )
    return problems


def committed_secret_problems(
    profile: Profile, services: Sequence[ServiceEnv], secrets_file: str
) -> list[str]:
    """Outside local/test, a secret setting must come from the secrets file, not a component."""
    if profile.kind.allows_placeholder_secrets:
        return []
    readers: dict[str, list[str]] = {}
    culprits: dict[str, OutputVariable] = {}
    for env in services:
        for out in env.variables:
            if out.variable.secret and not out.resolved.secret:
                readers.setdefault(out.variable.env_name, []).append(env.service)
                culprits[out.variable.env_name] = out
    return [
        f"secret {name} (read by {', '.join(readers[name])}) is fed by {out.variable.source} "
        f"from {out.resolved.definition.origin}, a committed file; profile {profile.name!r} is "
        f"kind {profile.kind} — move {out.variable.source} to {secrets_file}"
        for name, out in culprits.items()
    ]


def production_host_problems(
    profile: Profile,
    services: Sequence[ServiceEnv],
    hosts_by_profile: Mapping[str, Sequence[str]],
) -> list[str]:
    patterns = production_patterns(hosts_by_profile)
    hits: dict[tuple[str, str], list[str]] = {}
    described: dict[tuple[str, str], tuple[OutputVariable, list[str]]] = {}
    for env in services:
        for out in env.variables:
            found = production_hosts_hit(out.resolved.value, patterns)
            if found:
                key = (out.variable.env_name, out.variable.source)
                hits.setdefault(key, []).append(env.service)
                described[key] = (out, found)
    problems = []
    for key, service_names in hits.items():
        out, found = described[key]
        declared = sorted(
            {
                f"profiles/{patterns[p]}.toml"
                for p in patterns
                for host in found
                if production_hosts_hit(host, [p])
            }
        )
        problems.append(
            f"{_describe(out)} sends service(s) {', '.join(service_names)} to production host "
            f"{', '.join(found)} (listed in production_hosts of {', '.join(declared)}); profile "
            f"{profile.name!r} is kind {profile.kind} — point it at a non-production host"
        )
    return problems
