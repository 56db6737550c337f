"""Ollama's data shapes and conventions, shared by the fake's state and its routes."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

JsonDict = dict[str, Any]
DEFAULT_KEEP_ALIVE_S = 300.0
FOREVER = timedelta(days=365 * 100)


@dataclass(frozen=True)
class OllamaModel:
    name: str  # with its tag: "llama3.2:1b"
    size: int  # bytes on disk and, when loaded fully, in VRAM
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization_level: str = "Q8_0"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> JsonDict:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


DEFAULT_MODELS = (
    OllamaModel("llama3.2:1b", 1_321_098_329),
    OllamaModel("nomic-embed-text:latest", 274_302_450, "nomic-bert", "137M", "F16"),
)
DEFAULT_REGISTRY = (OllamaModel("qwen2.5:0.5b", 397_821_319, "qwen2", "494.03M", "Q4_K_M"),)


@dataclass
class Generation:
    """One generate/chat request as the fake served it."""

    endpoint: str
    model: str
    tokens_planned: int
    tokens_sent: int = 0
    done: bool = False  # the final ``done: true`` line (or body) was produced
    disconnected: bool = False  # the client closed the connection before the end
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class HttpFailure:
    status: int
    message: str


def qualified(name: str) -> str:
    """Ollama's name normalisation: ``llama3`` means ``llama3:latest``."""
    return name if ":" in name else f"{name}:latest"


def keep_alive_s(value: Any) -> float:
    """``keep_alive`` as seconds: a number, or a duration such as ``"5m"``; negative: forever."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if match is None:
        raise ValueError(f"time: invalid duration {value!r}")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def tokens_of(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or [text]


def embedding_of(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text`` (Ollama's /api/embed normalises too)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]
