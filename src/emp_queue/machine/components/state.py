"""The record of installed custom nodes, so a restart knows what it need not redo.

Models need no record: the cache is content-addressed, so a file's name is its verified hash.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from emp_queue.machine.components.errors import ComponentError
from emp_queue.machine.components.manifest import NodeSpec

log = structlog.get_logger(__name__)


class NodeRecord(BaseModel):
    """What was installed for one node: the manifest entry it came from and the commit."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    git: str
    ref: str | None
    recursive: bool
    requirements: bool
    commit: str

    def satisfies(self, spec: NodeSpec) -> bool:
        return (self.git, self.ref, self.recursive, self.requirements) == (
            spec.git,
            spec.ref,
            spec.recursive,
            spec.requirements,
        )


class _StateFile(BaseModel):
    version: int = 1
    nodes: dict[str, NodeRecord] = {}


class ComponentState:
    """Node records kept in a small JSON file, rewritten atomically after each install."""

    def __init__(self, path: Path, records: dict[str, NodeRecord]) -> None:
        self._path = path
        self._records = records
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, path: Path) -> ComponentState:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, {})
        except OSError as error:
            raise ComponentError(f"state file {path} cannot be read: {error.strerror}") from error
        try:
            return cls(path, dict(_StateFile.model_validate_json(text).nodes))
        except ValidationError as error:
            # The record only saves work; a damaged one means "redo every node", which is
            # safe, rather than a machine that cannot start.
            log.warning("component_state_damaged", path=str(path), errors=error.error_count())
            return cls(path, {})

    def get(self, name: str) -> NodeRecord | None:
        return self._records.get(name)

    async def put(self, name: str, record: NodeRecord) -> None:
        async with self._lock:
            self._records[name] = record
            await asyncio.to_thread(self._write)

    def _write(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        tmp.write_text(_StateFile(nodes=self._records).model_dump_json(indent=2), "utf-8")
        os.replace(tmp, self._path)
