"""Placement's DELETE for the services that keep their own models: Ollama and A1111 / Forge.

**Ollama** owns its model store, so a delete is Ollama's own ``DELETE /api/delete
{"model": <name>}`` (200 with an empty body; 404 ``{"error": "model '<name>' not found"}``).
The server does not unload a running model when it deletes it (``ollama rm`` unloads first
itself), so :class:`OllamaDelete` refuses a model ``GET /api/ps`` shows loaded: something
uses it right now. ``freed_bytes`` is the size ``GET /api/tags`` reports for it just before,
or 0 when another installed name has the same digest (a second tag of one model: Ollama
removes layers only when no manifest uses them); layers shared with a different model (a
common base) also stay, so it is an upper bound there.

**A1111** reads its checkpoints from its own folder (``models/Stable-diffusion``, set here by
``EMP_A1111_MODELS_DIR``). :class:`A1111Files` refuses the selected checkpoint
(``sd_model_checkpoint`` of ``GET /sdapi/v1/options``: unloading keeps it selected, and A1111
would load it again for the next generation), removes the checkpoint file under the rules of
:mod:`emp_queue.machine.model_files` (a relative name, nothing resolving outside the folder,
no symlink leading out, never a folder), then asks ``POST /sdapi/v1/refresh-checkpoints`` so
``/sdapi/v1/sd-models`` — what the A1111 worker reports as installed — no longer lists it.

The loop has already checked, just before, that no job waits for the model, none running on
this machine needs it and no live worker of the machine has it loaded (``placement_loop``).
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import httpx
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.connectors.a1111 import checkpoint_name, same_checkpoint
from emp_queue.connectors.ollama_stream import error_text
from emp_queue.http_tls import tls_context
from emp_queue.machine.model_files import UnsafeModelPathError, checked_file, checked_name
from emp_queue.machine.placement import Action, Outcome, PlacementDecision

__all__ = [
    "A1111Files",
    "A1111FilesSettings",
    "OllamaDelete",
    "delete_checkpoint",
    "ollama_freed_bytes",
]


def _client(base_url: str, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, timeout=timeout_s, trust_env=False, verify=tls_context(trust_env=False)
    )


def _not_done(detail: str) -> Outcome:
    return Outcome(False, detail, {"freed_bytes": 0})


def _same_ollama_name(wanted: str, name: str) -> bool:
    """Ollama's names: ``llama3`` is ``llama3:latest``."""
    return name in (wanted, f"{wanted}:latest")


def ollama_freed_bytes(installed: list[dict[str, Any]], name: str) -> tuple[int, list[str]]:
    """What deleting ``name`` frees, from ``/api/tags`` as it was just before: its size, or 0
    when other names share its digest (copies of one manifest; returned too)."""
    found = next(m for m in installed if m.get("name") == name)
    twins = [
        str(m.get("name"))
        for m in installed
        if m.get("name") != name and m.get("digest") == found.get("digest")
    ]
    return (0 if twins else int(found.get("size") or 0)), twins


class OllamaDelete:
    """Deletes models of the ``ollama`` service through ``DELETE /api/delete``."""

    service = "ollama"

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.service == self.service and decision.action is Action.DELETE

    async def carry_out(self, decision: PlacementDecision, progress: object) -> Outcome:
        async with _client(self.url, self.timeout_s) as client:
            tags = await client.get("/api/tags")
            if tags.status_code != 200:
                return _not_done(f"ollama answered {tags.status_code} to GET /api/tags")
            installed = [m for m in tags.json().get("models") or [] if isinstance(m, dict)]
            found = next(
                (m for m in installed if _same_ollama_name(decision.model, str(m.get("name")))),
                None,
            )
            if found is None:
                return _not_done(f"not installed in the ollama at {self.url}")
            name = str(found["name"])
            running = await client.get("/api/ps")
            if running.status_code != 200:
                return _not_done(f"ollama answered {running.status_code} to GET /api/ps")
            if any(m.get("name") == name for m in running.json().get("models") or []):
                return _not_done(f"kept: the ollama at {self.url} has it loaded (GET /api/ps)")
            response = await client.request("DELETE", "/api/delete", json={"model": name})
        if response.status_code != 200:
            return _not_done(f"ollama answered {response.status_code}: {error_text(response)}")
        freed, twins = ollama_freed_bytes(installed, name)
        shared = f" (its layers stay: {', '.join(twins)} uses them)" if twins else ""
        return Outcome(
            True,
            f"deleted {name} through DELETE {self.url}/api/delete: {freed} bytes freed{shared}",
            {"freed_bytes": freed},
        )


class A1111FilesSettings(BaseSettings):
    """Where A1111 keeps its checkpoints (``EMP_A1111_MODELS_DIR``)."""

    model_config = SettingsConfigDict(env_prefix="EMP_A1111_", extra="ignore")

    models_dir: Path | None = None
    """A1111's ``models/Stable-diffusion`` folder; unset: A1111 models are not deleted."""

    @field_validator("models_dir")
    @classmethod
    def _a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            what = "does not exist" if not value.exists() else "is not a directory"
            raise ValueError(
                f"{value} {what}: EMP_A1111_MODELS_DIR must be A1111's checkpoint folder "
                "(<webui>/models/Stable-diffusion)"
            )
        return value


def delete_checkpoint(models_dir: Path, name: str) -> int | None:
    """Remove checkpoint ``name`` (a path relative to ``models_dir``); the bytes freed, None
    when there is no such file, UnsafeModelPathError when removing it is not safe."""
    path = models_dir / checked_name(name)
    info = checked_file(path, models_dir)
    if info is None:
        return None
    path.unlink()
    if stat.S_ISLNK(info.st_mode) or info.st_nlink > 1:
        return 0  # the file's data stays with its other name
    return info.st_size


class A1111Files:
    """Deletes A1111 checkpoints from its models folder, then has A1111 re-list them."""

    service = "a1111"

    def __init__(self, url: str, models_dir: Path | None, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.models_dir = models_dir
        self.timeout_s = timeout_s

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.service == self.service and decision.action is Action.DELETE

    async def carry_out(self, decision: PlacementDecision, progress: object) -> Outcome:
        if self.models_dir is None:
            return _not_done("EMP_A1111_MODELS_DIR is not set: A1111's checkpoint folder unknown")
        async with _client(f"{self.url}/sdapi/v1", self.timeout_s) as client:
            found = await self._title(client, decision.model)
            if isinstance(found, Outcome):
                return found
            name = checkpoint_name(found)
            try:
                freed = await asyncio.to_thread(delete_checkpoint, self.models_dir, name)
            except UnsafeModelPathError as refused:
                return _not_done(f"refused: {refused}")
            if freed is None:
                return _not_done(f"no file {name} under {self.models_dir}")
            refreshed = await client.post("/refresh-checkpoints")
        detail = f"deleted {name}: {freed} bytes freed"
        if not refreshed.is_success:
            detail += f"; a1111 answered {refreshed.status_code} to POST /refresh-checkpoints"
        return Outcome(True, detail, {"freed_bytes": freed})

    async def _title(self, client: httpx.AsyncClient, model: str) -> str | Outcome:
        """A1111's title of ``model``, or why it is not deleted."""
        options = await client.get("/options")
        if options.status_code != 200:
            return _not_done(f"a1111 answered {options.status_code} to GET /options")
        current = str(options.json().get("sd_model_checkpoint") or "")
        if current and same_checkpoint(model, current):
            return _not_done(
                "refused: it is a1111's selected checkpoint (sd_model_checkpoint), which A1111 "
                "loads again for the next generation; select another one first"
            )
        models = await client.get("/sd-models")
        if models.status_code != 200:
            return _not_done(f"a1111 answered {models.status_code} to GET /sd-models")
        listed: list[Any] = models.json()
        titles = [str(m.get("title")) for m in listed if isinstance(m, dict)]
        title = next((t for t in titles if same_checkpoint(model, t)), None)
        if title is None:
            return _not_done("not a checkpoint of this a1111 (GET /sdapi/v1/sd-models)")
        return title
