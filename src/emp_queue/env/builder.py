"""Build a profile: layer its components and secrets, resolve, and map onto each service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from emp_queue.env.checks import (
    SourceContext,
    committed_secret_problems,
    missing_required_problem,
    placeholder_problems,
    production_host_problems,
    validation_problems,
)
from emp_queue.env.components import Component, load_components, load_secrets_file
from emp_queue.env.errors import EnvCheckError, ProfileError
from emp_queue.env.interfaces import (
    SERVICE_INTERFACES,
    Interfaces,
    ServiceVariable,
    service_variables,
)
from emp_queue.env.layout import EnvLayout
from emp_queue.env.output import render_env_file, write_private
from emp_queue.env.pool import Definition, Origin, Pool, Resolution, layer, resolve
from emp_queue.env.profiles import Profile, load_profile, load_profiles
from emp_queue.env.service_env import OutputVariable, ServiceEnv


@dataclass(frozen=True)
class ProfileBuild:
    layout: EnvLayout
    profile: Profile
    components: Mapping[str, Component]
    secrets_path: Path
    pool: Pool
    resolution: Resolution
    services: tuple[ServiceEnv, ...]
    problems: tuple[str, ...]
    interfaces: Interfaces

    def service(self, name: str) -> ServiceEnv:
        for env in self.services:
            if env.service == name:
                return env
        built = ", ".join(env.service for env in self.services)
        raise ProfileError(
            f"profile {self.profile.name!r} does not build service {name!r} (it builds {built}); "
            f"add it to services in profiles/{self.profile.name}.toml"
        )


def _component_definitions(
    layout: EnvLayout, profile: Profile, components: Mapping[str, Component]
) -> list[Definition]:
    definitions = []
    for name, sections in profile.components.items():
        component = components.get(name)
        if component is None:
            raise ProfileError(
                f"profile {profile.name!r} layers unknown component {name!r}; known components: "
                f"{', '.join(sorted(components))} "
                f"(files in {layout.display(layout.components_dir)})"
            )
        for section in sections:
            if section not in component.sections:
                available = ", ".join(f"[{s}]" for s in component.sections)
                raise ProfileError(
                    f"profile {profile.name!r} layers section [{section}] of "
                    f"{layout.display(component.path)}, which has {available}; add the section "
                    f"or remove it from profiles/{profile.name}.toml"
                )
            for key, raw in component.sections[section].items():
                origin = Origin(layout.display(component.path), section, key)
                definitions.append(Definition(component.pool_name(key), raw, origin, name))
    return definitions


def _secret_definitions(
    layout: EnvLayout, profile: Profile, path: Path
) -> tuple[list[Definition], list[str]]:
    if not path.is_file():
        if not profile.profile.secrets_required:
            return [], []
        example = layout.display(layout.secrets_file("example"))
        return [], [
            f"secrets file {layout.display(path)} is missing; profile {profile.name!r} requires "
            f"it — copy {example} to it and fill in the real values"
        ]
    shown = layout.display(path)
    return [
        Definition(name, raw, Origin(shown, None, name), None)
        for name, raw in load_secrets_file(path).items()
    ], []


def _service_env(
    service: str,
    pool: Pool,
    resolution: Resolution,
    interfaces: Interfaces,
) -> tuple[ServiceEnv, list[ServiceVariable]]:
    outputs, defaulted, missing = [], [], []
    for variable in service_variables(service, interfaces):
        resolved = resolution.values.get(variable.source)
        if resolved is not None:
            outputs.append(OutputVariable(variable, resolved))
        elif variable.source in pool.definitions:
            continue  # defined but unresolvable: its interpolation problem is already listed
        elif variable.required:
            missing.append(variable)
        else:
            defaulted.append(variable)
    return ServiceEnv(service, tuple(outputs), tuple(defaulted)), missing


def _missing_problems(
    missing_by_service: Mapping[str, list[ServiceVariable]], context: SourceContext
) -> list[str]:
    services_needing: dict[ServiceVariable, list[str]] = {}
    for service, variables in missing_by_service.items():
        for variable in variables:
            services_needing.setdefault(variable, []).append(service)
    return [
        missing_required_problem(services, variable, context)
        for variable, services in services_needing.items()
    ]


def plan(
    layout: EnvLayout,
    profile_name: str,
    *,
    secrets_path: Path | None = None,
    interfaces: Interfaces = SERVICE_INTERFACES,
) -> ProfileBuild:
    """Everything ``build`` would write, and every problem, without writing anything."""
    profile = load_profile(layout.profiles_dir, profile_name)
    components = load_components(layout.components_dir)
    secrets_path = secrets_path or layout.secrets_file(profile.profile.secrets)
    secret_defs, problems = _secret_definitions(layout, profile, secrets_path)
    pool = layer([*_component_definitions(layout, profile, components), *secret_defs])
    shown_secrets = layout.display(secrets_path)
    resolution = resolve(
        pool, f"define {{name}} in {shown_secrets} or in a section profile {profile.name!r} layers"
    )
    problems.extend(resolution.problems)
    built = {
        service: _service_env(service, pool, resolution, interfaces)
        for service in profile.profile.services
    }
    services = tuple(env for env, _ in built.values())
    context = SourceContext(layout, profile, components, secrets_path)
    problems.extend(
        _missing_problems({name: missing for name, (_, missing) in built.items()}, context)
    )
    for env in services:
        problems.extend(validation_problems(env.service, env.variables))
    problems.extend(placeholder_problems(profile, pool, resolution))
    problems.extend(committed_secret_problems(profile, services, shown_secrets))
    if profile.kind != "production":
        others = load_profiles(layout.profiles_dir)
        hosts = {name: other.profile.production_hosts for name, other in others.items()}
        problems.extend(production_host_problems(profile, services, hosts))
    return ProfileBuild(
        layout,
        profile,
        components,
        secrets_path,
        pool,
        resolution,
        services,
        tuple(problems),
        interfaces,
    )


def check(build: ProfileBuild) -> None:
    if build.problems:
        raise EnvCheckError(build.profile.name, build.problems)


def output_paths(out_dir: Path, service: str, profile: str) -> tuple[Path, Path]:
    folder = out_dir / service
    return folder / f".env.{profile}", folder / f".env.secret.{profile}"


def write(build: ProfileBuild, out_dir: Path) -> list[Path]:
    """Write each service's public and secret env files; refuses a build with problems."""
    check(build)
    log = structlog.get_logger("emp_queue.env")
    written = []
    for env in build.services:
        public_path, secret_path = output_paths(out_dir, env.service, build.profile.name)
        header = [
            f"{env.service} — profile {build.profile.name}; generated by `emp env build "
            f"{build.profile.name}`, do not edit.",
            f"Explain a value: emp env explain NAME --profile {build.profile.name}",
        ]
        defaults = [f"{v.env_name} not set: uses default {v.default}" for v in env.defaulted]
        public = render_env_file([*header, *defaults], env.values(secret=False))
        secret = render_env_file(header, env.values(secret=True))
        write_private(public_path, public, 0o644)
        write_private(secret_path, secret, 0o600)
        written.extend([public_path, secret_path])
        log.info(
            "env_service_built",
            profile=build.profile.name,
            service=env.service,
            public_variables=sorted(env.values(secret=False)),
            secret_variables=sorted(env.values(secret=True)),
        )
    return written
