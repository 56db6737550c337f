"""Deleting an evicted model's files: placement's DELETE, for the services whose model folder
the component manager knows (``EMP_COMPONENTS_MODELS_DIR``: ComfyUI's ``models`` folder).

Which files: the manifest entry's ``dest`` when the manifest names the model, else
``<folder>/<model>`` in every model folder (``checkpoints/``, ``loras/``...), as ComfyUI names a
model by its path inside its folder. Safety first — every rule refuses, none guesses:

* the name must be a relative path without ``..``, ``\\``, NUL or an empty part;
* the file's folder must resolve inside the models folder (no symlinked folder leads out);
* a symlink is removed only when it points into the models folder or the download cache (what
  the downloader makes across disks); one pointing anywhere else is refused, never followed;
* only regular files and such links are removed, never a folder.

Freed bytes are counted honestly: a hard-linked file frees its space only with its last link,
so the downloader's cache copy (``cache_dir/sha256/<hash>``) is removed too when nothing else
links it (no other link, no other manifest entry with that hash still in place). The caller
(the placement loop) has already checked that no job waits for the model, none running here
needs it and no live worker has it loaded. Workers see the change at their next capabilities
refresh (``EMP_WORKER_CAPABILITIES_REFRESH_S``): ComfyUI re-lists a folder whose modification
time changed, so the model leaves ``installed``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from emp_queue.machine.components.fetch import find_model
from emp_queue.machine.components.manifest import Manifest, ModelSpec
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.machine.placement import Action, Outcome, PlacementDecision

if TYPE_CHECKING:
    from emp_queue.machine.components.manager import ComponentManager

__all__ = [
    "DeleteReport",
    "ModelFiles",
    "UnsafeModelPathError",
    "checked_file",
    "checked_name",
    "delete_model_files",
]


class UnsafeModelPathError(ValueError):
    """A model name or file that deleting could take outside the models folder."""


@dataclass
class DeleteReport:
    removed: list[Path] = field(default_factory=list)
    freed_bytes: int = 0


def checked_name(model: str) -> PurePosixPath:
    """The model name as a relative path, or UnsafeModelPathError."""
    path = PurePosixPath(model)
    if (
        not model
        or "\\" in model
        or "\0" in model
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in model.split("/"))
    ):
        raise UnsafeModelPathError(f"model name {model!r} is not a relative path inside a folder")
    return path


def candidates(models_dir: Path, model: str, spec: ModelSpec | None) -> list[Path]:
    """Paths that may hold ``model``: the manifest's ``dest``, or ``<folder>/<model>``."""
    name = checked_name(model)
    if spec is not None:
        return [models_dir / checked_name(spec.dest)]
    if not models_dir.is_dir():
        return []
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.is_symlink())
    return [folder / name for folder in folders]


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def checked_file(path: Path, models_dir: Path, *link_roots: Path) -> os.stat_result | None:
    """lstat of a file safe to remove (None: nothing there), or UnsafeModelPathError: its
    folder resolves inside ``models_dir``; a symlink points into ``models_dir`` or one of
    ``link_roots``; anything else is a regular file."""
    root = models_dir.resolve()
    if not _inside(path.parent.resolve(), root):
        raise UnsafeModelPathError(f"{path} lies outside {root} once links are followed")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        target = path.resolve()
        if not any(_inside(target, allowed.resolve()) for allowed in (root, *link_roots)):
            raise UnsafeModelPathError(f"{path} links to {target}, outside the model folders")
        return info
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeModelPathError(f"{path} is not a regular file")
    return info


def delete_model_files(
    settings: ComponentSettings, manifest: Manifest, model: str, models_dir: Path
) -> DeleteReport:
    """Remove ``model``'s files under ``models_dir`` (and its unshared cache copy)."""
    spec = find_model(manifest, model)
    paths = candidates(models_dir, model, spec)
    checked = [(path, checked_file(path, models_dir, settings.cache_dir)) for path in paths]
    report = DeleteReport()
    blobs: set[Path] = set()
    for path, info in checked:
        if info is None:
            continue
        if stat.S_ISLNK(info.st_mode):
            blobs.add(path.resolve())
        elif info.st_nlink == 1:
            report.freed_bytes += info.st_size
        path.unlink()
        report.removed.append(path)
    if spec is not None:
        blobs.add(settings.cache_dir / "sha256" / spec.sha256)
    for blob in sorted(blobs):
        report.freed_bytes += _drop_cached(settings, manifest, blob, spec, models_dir)
    return report


def _drop_cached(
    settings: ComponentSettings,
    manifest: Manifest,
    blob: Path,
    spec: ModelSpec | None,
    models_dir: Path,
) -> int:
    """Remove a cache file no model uses any more; the bytes freed."""
    cache = (settings.cache_dir / "sha256").resolve()
    if blob.parent.resolve() != cache:
        return 0  # a link into the models folder: its target is another model's file
    try:
        info = blob.lstat()
    except FileNotFoundError:
        return 0
    sharing = [
        other
        for other in manifest.models
        if other.sha256 == blob.name and other != spec and (models_dir / other.dest).exists()
    ]
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or sharing:
        return 0
    blob.unlink()
    return info.st_size


class ModelFiles:
    """Placement's DELETE for the services in ``services`` (their model folder is
    ``settings.models_dir``); other decisions are not its to take."""

    def __init__(
        self,
        manager: ComponentManager,
        settings: ComponentSettings,
        services: Sequence[str] = ("comfyui",),
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.services = tuple(services)

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.action is Action.DELETE and decision.service in self.services

    async def carry_out(self, decision: PlacementDecision, progress: object) -> Outcome:
        manifest = await self.manager.manifest()
        try:
            report = await asyncio.to_thread(
                delete_model_files,
                self.settings,
                manifest,
                decision.model,
                self.settings.models_dir,
            )
        except UnsafeModelPathError as refused:
            return Outcome(False, f"refused: {refused}", {"freed_bytes": 0})
        if not report.removed:
            return Outcome(
                False,
                f"no file of it under {self.settings.models_dir}",
                {"freed_bytes": 0},
            )
        names = ", ".join(str(p.relative_to(self.settings.models_dir)) for p in report.removed)
        return Outcome(
            True,
            f"deleted {names}: {report.freed_bytes} bytes freed",
            {"freed_bytes": report.freed_bytes},
        )
