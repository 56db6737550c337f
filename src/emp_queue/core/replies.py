"""Redis replies stay bytes (``connect`` does not decode them); names and ids become text here."""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
