"""The manifest: which custom nodes and models a machine needs, read from JSON or TOML.

A manifest is data written by an operator and fetched by many machines, so it is validated
in full before anything is installed: a typo fails every machine the same way, at once.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emp_queue.http_tls import tls_context
from emp_queue.machine.components.errors import ManifestError

COMPONENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
# A leading '-' would turn a URL or ref into a git option.
GIT_ARGUMENT_PATTERN = r"^[^-\s]\S*$"


class NodeSpec(BaseModel):
    """A ComfyUI custom node: a git repository checked out at a branch, tag or commit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=COMPONENT_NAME_PATTERN, description="Folder under nodes_dir.")
    git: str = Field(pattern=GIT_ARGUMENT_PATTERN, description="Repository URL (or local path).")
    ref: str | None = Field(
        default=None,
        pattern=GIT_ARGUMENT_PATTERN,
        description="Branch, tag or commit; unset: the repository's default branch.",
    )
    recursive: bool = Field(default=True, description="Check out submodules recursively.")
    requirements: bool = Field(default=False, description="pip install -r requirements.txt.")
    env: dict[str, str] = Field(
        default_factory=dict, description="The node's .env; values may use ${VAR}."
    )

    @field_validator("env")
    @classmethod
    def _env_keys(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not key.isidentifier():
                raise ValueError(f"env key {key!r} is not a valid variable name")
        return env


class ModelSpec(BaseModel):
    """A model file: downloaded from ``url``, verified, and placed at ``dest`` under models_dir."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=COMPONENT_NAME_PATTERN)
    url: str = Field(pattern=r"^https?://", description="HTTP(S) URL of the file.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="Hex SHA-256 of the whole file.")
    size: int | None = Field(default=None, ge=0, description="Bytes; enables the disk check.")
    dest: str = Field(min_length=1, description="Path under models_dir, e.g. checkpoints/x.ckpt.")

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("dest")
    @classmethod
    def _relative_dest(cls, dest: str) -> str:
        path = PurePosixPath(dest)
        if path.is_absolute() or ".." in path.parts or dest.endswith("/"):
            raise ValueError(f"dest {dest!r} must be a file path inside models_dir (no '..')")
        return dest


class Manifest(BaseModel):
    """What to install. Names must be unique within each list (they name progress and reports)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    custom_nodes: list[NodeSpec] = Field(default_factory=list)
    models: list[ModelSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        for kind, names in (
            ("custom node", [node.name for node in self.custom_nodes]),
            ("model", [model.name for model in self.models]),
        ):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique; repeated: {duplicates}")
        dests = [model.dest for model in self.models]
        clashes = sorted({dest for dest in dests if dests.count(dest) > 1})
        if clashes:
            raise ValueError(f"two models share a dest: {clashes}")
        return self


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse JSON (``.json`` or text starting with ``{``) or TOML; ``source`` names it in errors."""
    data: Any
    try:
        if source.split("?")[0].lower().endswith(".json") or text.lstrip().startswith("{"):
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ManifestError(
            f"manifest {source}: not valid JSON or TOML ({error}); only JSON and TOML are read"
        ) from error
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        raise ManifestError(f"manifest {source} is invalid:\n{error}") from error


async def load_manifest(source: str, *, timeout_s: float = 30.0) -> Manifest:
    """Read the manifest from a file path or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        try:
            async with httpx.AsyncClient(
                timeout=timeout_s, follow_redirects=True, verify=tls_context()
            ) as client:
                response = await client.get(source)
                response.raise_for_status()
        except httpx.HTTPError as error:
            raise ManifestError(f"manifest {source} could not be fetched: {error}") from error
        return parse_manifest(response.text, source)
    return await asyncio.to_thread(_read_manifest_file, source)


def _read_manifest_file(source: str) -> Manifest:
    path = Path(source).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(
            f"manifest {path} cannot be read ({error.strerror}); check EMP_COMPONENTS_MANIFEST"
        ) from error
    return parse_manifest(text, str(path))
