"""Parsing of the client commands' options: JSON payloads and ``--require`` rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

LIST_KEYS = frozenset({"models"})


def json_option(value: str, option: str) -> dict[str, Any]:
    """Inline JSON, or ``@path`` to a JSON file; must be an object."""
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text()
        except OSError as error:
            message = f"cannot read {path}: {error.strerror}"
            raise typer.BadParameter(message, param_hint=option) from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"not valid JSON ({error})", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=option)
    return parsed


def _value(raw: str, key: str) -> Any:
    if key in LIST_KEYS:
        return [part.strip() for part in raw.split(",") if part.strip()]
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def requirements_option(rules: list[str]) -> dict[str, Any]:
    """``models=sdxl,flux``, ``hardware.gpu_memory_gb=24``, ``positive_requirements.region=eu``
    → a requirements object (values are JSON when they parse, strings otherwise)."""
    requirements: dict[str, Any] = {}
    for rule in rules:
        path, sep, raw = rule.partition("=")
        if not sep or not path or not raw:
            raise typer.BadParameter(f"{rule!r} is not KEY=VALUE", param_hint="--require")
        *parents, leaf = path.split(".")
        target = requirements
        for parent in parents:
            child = target.setdefault(parent, {})
            if not isinstance(child, dict):
                raise typer.BadParameter(f"{path!r} nests under a value", param_hint="--require")
            target = child
        target[leaf] = _value(raw, leaf)
    return requirements


def time_option(value: str, option: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC when it names no zone) → epoch ms."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither epoch milliseconds nor an ISO 8601 time "
            "(e.g. 2027-01-31T09:00:00Z)",
            param_hint=option,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)
