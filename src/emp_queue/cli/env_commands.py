"""``emp env``: build, check and explain the per-service env files; pack them for images."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emp_queue.env.builder import ProfileBuild, check, output_paths, plan, write
from emp_queue.env.checks import MASK
from emp_queue.env.components import load_components
from emp_queue.env.errors import EnvCheckError, EnvConfigError
from emp_queue.env.explain import explain
from emp_queue.env.layout import DEFAULT_CONFIG_DIR, EnvLayout
from emp_queue.env.output import render_env_file, write_private
from emp_queue.env.pack import ENV_KEY_VARIABLE, PackedEnv, generate_key, pack_env, read_packed_env
from emp_queue.env.profiles import load_profiles

env_app = typer.Typer(
    name="env",
    help="Build per-service env files from components, service interfaces and profiles.",
    no_args_is_help=True,
)

ConfigDir = Annotated[
    Path,
    typer.Option(
        "--config-dir",
        help="Folder holding components/, profiles/ and secrets/.",
        show_default=True,
    ),
]
SecretsFile = Annotated[
    Path | None,
    typer.Option(
        "--secrets-file", help="Read secrets from this file instead of the profile's own."
    ),
]


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(exc: EnvConfigError) -> NoReturn:
    console = _err()
    if isinstance(exc, EnvCheckError):
        console.print(
            Text(f"profile {exc.profile!r}: {len(exc.problems)} problem(s)", style="bold red")
        )
        for problem in exc.problems:
            console.print(Text(problem))
    else:
        console.print(Text(f"error: {exc}", style="red"))
    raise typer.Exit(code=1)


def _plan(config_dir: Path, profile: str, secrets_file: Path | None) -> ProfileBuild:
    try:
        return plan(EnvLayout(config_dir), profile, secrets_path=secrets_file)
    except EnvConfigError as exc:
        _fail(exc)


@env_app.command("build")
def build_command(
    profile: Annotated[str, typer.Argument(help="Profile name, e.g. local or production.")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder [default: CONFIG_DIR/out].")
    ] = None,
    secrets_file: SecretsFile = None,
) -> None:
    """Write .env.PROFILE (public) and .env.secret.PROFILE (secrets) for each service."""
    started = time.perf_counter()
    built = _plan(config_dir, profile, secrets_file)
    out_dir = out or EnvLayout(config_dir).default_out_dir
    try:
        paths = write(built, out_dir)
    except EnvConfigError as exc:
        _fail(exc)
    elapsed_ms = (time.perf_counter() - started) * 1000
    console = _out()
    for path in paths:
        console.print(Text(f"wrote {path}"))
    console.print(
        Text(f"profile {profile!r}: {len(built.services)} service(s) in {elapsed_ms:.0f} ms")
    )


@env_app.command("check")
def check_command(
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    secrets_file: SecretsFile = None,
) -> None:
    """Validate a profile without writing; exit 1 with one line per problem."""
    built = _plan(config_dir, profile, secrets_file)
    try:
        check(built)
    except EnvCheckError as exc:
        _fail(exc)
    services = ", ".join(env.service for env in built.services)
    _out().print(Text(f"profile {profile!r} is valid: services {services}", style="green"))


@env_app.command("explain")
def explain_command(
    variable: Annotated[str, typer.Argument(help="EMP_REDIS_URL (a service's) or REDIS_URL.")],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name.")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    secrets_file: SecretsFile = None,
) -> None:
    """Show where a variable's value comes from: each layer, override and interpolation."""
    built = _plan(config_dir, profile, secrets_file)
    try:
        lines = explain(built, variable)
    except EnvConfigError as exc:
        _fail(exc)
    console = _out()
    for line in lines:
        console.print(Text(line))


@env_app.command("list")
def list_command(config_dir: ConfigDir = DEFAULT_CONFIG_DIR) -> None:
    """List the profiles and the components."""
    layout = EnvLayout(config_dir)
    try:
        profiles = load_profiles(layout.profiles_dir)
        components = load_components(layout.components_dir)
    except EnvConfigError as exc:
        _fail(exc)
    profile_table = Table("profile", "kind", "services", "secrets", "description", title="Profiles")
    for name, profile in profiles.items():
        meta = profile.profile
        secrets = layout.secrets_file(meta.secrets).name
        required = "" if meta.secrets_required else " (optional)"
        profile_table.add_row(
            name, str(meta.kind), ", ".join(meta.services), secrets + required, meta.description
        )
    component_table = Table("component", "namespace", "sections", "keys", title="Components")
    for name, component in components.items():
        keys = {key for values in component.sections.values() for key in values}
        component_table.add_row(
            name, f"{component.namespace}_", ", ".join(component.sections), str(len(keys))
        )
    console = _out()
    console.print(profile_table)
    console.print(component_table)


def _env_key() -> str:
    key = os.environ.get(ENV_KEY_VARIABLE)
    if not key:
        _fail(
            EnvConfigError(
                f"{ENV_KEY_VARIABLE} is not set; export the key (`emp env keygen` makes one) "
                f"and keep it out of the image"
            )
        )
    return key


@env_app.command("pack")
def pack_command(
    profile: Annotated[str, typer.Argument(help="Profile name.")],
    service: Annotated[str, typer.Option("--service", help="Service to pack, e.g. machine.")],
    config_dir: ConfigDir = DEFAULT_CONFIG_DIR,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="[default: CONFIG_DIR/out/SERVICE/.env.PROFILE.enc]"),
    ] = None,
    secrets_file: SecretsFile = None,
) -> None:
    """Encrypt one service's env with the key in EMP_ENV_KEY, for a machine image."""
    key = _env_key()
    built = _plan(config_dir, profile, secrets_file)
    try:
        check(built)
        env = built.service(service)
        data = pack_env(
            PackedEnv(profile, service, env.values(secret=False), env.values(secret=True)), key
        )
    except EnvConfigError as exc:
        _fail(exc)
    path = output or EnvLayout(config_dir).default_out_dir / service / f".env.{profile}.enc"
    write_private(path, data.decode("ascii"), 0o600)
    _out().print(Text(f"wrote {path} ({len(env.variables)} variable(s), encrypted)"))


@env_app.command("unpack")
def unpack_command(
    packed_file: Annotated[Path, typer.Argument(help="File written by `emp env pack`.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write .env.PROFILE and .env.secret.PROFILE under OUT/SERVICE."),
    ] = None,
) -> None:
    """Decrypt a packed env with EMP_ENV_KEY; list it (secrets masked) or write it out."""
    key = _env_key()
    try:
        packed = read_packed_env(packed_file, key)
    except EnvConfigError as exc:
        _fail(exc)
    console = _out()
    console.print(Text(f"profile {packed.profile!r}, service {packed.service!r}"))
    for name, value in sorted(packed.public.items()):
        console.print(Text(f"  {name}={value}"))
    for name in sorted(packed.secret):
        console.print(Text(f"  {name}={MASK}"))
    if out is not None:
        public_path, secret_path = output_paths(out, packed.service, packed.profile)
        header = [f"{packed.service} — profile {packed.profile}; unpacked from {packed_file}"]
        write_private(public_path, render_env_file(header, packed.public), 0o644)
        write_private(secret_path, render_env_file(header, packed.secret), 0o600)
        console.print(Text(f"wrote {public_path} and {secret_path}"))


@env_app.command("keygen")
def keygen_command() -> None:
    """Print a new key for `emp env pack` (store it as EMP_ENV_KEY in the machine's secrets)."""
    _out().print(Text(generate_key()))
