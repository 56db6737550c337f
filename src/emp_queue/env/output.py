"""Writing env files that python-dotenv (pydantic-settings' reader) reads back verbatim."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path


def quote(value: str) -> str:
    # Single-quoted dotenv values are never ${}-expanded; only \\ and \' are escapes in them.
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def render_env_file(header: Sequence[str], values: Mapping[str, str]) -> str:
    lines = [f"# {line}" for line in header]
    lines.extend(f"{name}={quote(value)}" for name, value in sorted(values.items()))
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, mode: int) -> None:
    """Write atomically, creating the file with ``mode`` so a secret is never world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
