"""Downloading one model into the content-addressed cache, and placing it under models_dir.

The cache holds ``sha256/<hash>`` files, each renamed into place only after its bytes were
verified, so a file's presence proves its content: a restart never re-hashes the cache. An
unfinished download stays as ``sha256/<hash>.part`` and the next try asks only for the rest
(``Range``). The model's ``dest`` is a hard link to the cached file (a symlink across disks).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from emp_queue.machine.components.errors import (
    ChecksumMismatchError,
    DownloadError,
    InsufficientDiskError,
)
from emp_queue.machine.components.manifest import ModelSpec
from emp_queue.machine.components.progress import ProgressCallback
from emp_queue.machine.components.settings import ComponentSettings

log = structlog.get_logger(__name__)

CHUNK_BYTES = 1024 * 1024
GB = 1024**3


@dataclass(frozen=True)
class ModelPlan:
    """What one model needs: nothing, a link from the cache, or a download of some bytes."""

    spec: ModelSpec
    blob: Path
    dest: Path
    present: bool
    cached: bool
    remaining_bytes: int | None
    """Bytes still to download (size minus the partial file); None when the size is unknown."""


def sha256_of(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def free_bytes(path: Path) -> int:
    """Free space of the disk holding ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(settings: ComponentSettings, needed_bytes: int, what: str) -> None:
    """Refuse a download that would leave less than the reserve free on the cache's disk."""
    free = free_bytes(settings.cache_dir)
    reserve = int(settings.disk_reserve_gb * GB)
    if needed_bytes > free - reserve:
        raise InsufficientDiskError(
            f"{what} need {needed_bytes / GB:.2f} GB but {settings.cache_dir} has "
            f"{free / GB:.2f} GB free and {settings.disk_reserve_gb:g} GB must stay free "
            "(EMP_COMPONENTS_DISK_RESERVE_GB); free space or use a bigger disk"
        )


def _part(blob: Path) -> Path:
    return blob.with_name(f"{blob.name}.part")


def _exists(path: Path) -> bool:
    return os.path.exists(path)


def _size(path: Path) -> int:
    """Size of a file, 0 when it does not exist."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def link_into_place(blob: Path, dest: Path) -> None:
    """Make ``dest`` the cached file, atomically replacing whatever was there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.emp-link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(blob, tmp)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        os.symlink(blob.resolve(), tmp)
    os.replace(tmp, dest)


class ModelDownloader:
    """Plans and performs model installs with one shared HTTP client."""

    def __init__(self, settings: ComponentSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        # Two manifest entries may name the same file (same hash, two dests): one downloads,
        # the other waits and links.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def blob_path(self, spec: ModelSpec) -> Path:
        return self._settings.cache_dir / "sha256" / spec.sha256

    async def plan(self, spec: ModelSpec) -> ModelPlan:
        # Off the event loop: adopting a file found at dest means hashing it.
        return await asyncio.to_thread(self._plan, spec)

    def _plan(self, spec: ModelSpec) -> ModelPlan:
        blob = self.blob_path(spec)
        dest = self._settings.models_dir / spec.dest
        cached = blob.is_file()
        present = cached and dest.exists() and os.path.samefile(dest, blob)
        if not present and not cached and dest.is_file():
            present = cached = self._adopt(spec, dest, blob)
        remaining = None if spec.size is None else max(spec.size - _size(_part(blob)), 0)
        return ModelPlan(spec, blob, dest, present, cached, 0 if cached else remaining)

    @staticmethod
    def _adopt(spec: ModelSpec, dest: Path, blob: Path) -> bool:
        """A file already at ``dest`` (baked into an image, copied by hand) counts if it
        hashes right; it then seeds the cache so later runs need not hash it again."""
        actual = sha256_of(dest).hexdigest()
        if actual != spec.sha256:
            log.warning("component_model_replaced", model=spec.name, dest=str(dest), sha256=actual)
            return False
        blob.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(dest, blob)
        except OSError:
            shutil.copyfile(dest, blob)
        return True

    async def install(self, plan: ModelPlan, progress: ProgressCallback) -> tuple[bool, str]:
        """Download (if needed) and link the model; return (whether anything was done, what)."""
        spec = plan.spec
        if plan.present:
            size = _size(plan.blob)
            progress(spec.name, size, size, "already present")
            return False, "already present"
        detail = "linked from the cache"
        async with self._locks[spec.sha256]:
            if not plan.cached and not _exists(plan.blob):
                size = await self._download(spec, plan.blob, progress)
                detail = f"downloaded {size} bytes"
        link_into_place(plan.blob, plan.dest)
        size = _size(plan.blob)
        progress(spec.name, size, size, detail)
        log.info("component_model_installed", model=spec.name, dest=str(plan.dest), how=detail)
        return True, detail

    async def _download(self, spec: ModelSpec, blob: Path, progress: ProgressCallback) -> int:
        part = _part(blob)
        part.parent.mkdir(parents=True, exist_ok=True)
        attempts = self._settings.download_attempts
        for attempt in range(1, attempts + 1):
            try:
                digest = await self._fetch(spec, part, progress)
                break
            except DownloadError as error:
                if isinstance(error, ChecksumMismatchError) or attempt == attempts:
                    raise
                log.warning("component_download_retry", model=spec.name, error=str(error))
                await asyncio.sleep(self._settings.download_retry_delay_s)
        actual = digest.hexdigest()
        if actual != spec.sha256:
            part.unlink(missing_ok=True)
            raise ChecksumMismatchError(spec.name, spec.url, spec.sha256, actual)
        size = _size(part)
        os.replace(part, blob)
        return size

    async def _fetch(
        self, spec: ModelSpec, part: Path, progress: ProgressCallback
    ) -> hashlib._Hash:
        """One try: continue ``part`` from its end; return the hash of the whole file."""
        offset = _size(part)
        # Byte counts and hashes are of the file itself, never of a compressed transfer.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        done = offset
        try:
            async with self._client.stream("GET", spec.url, headers=headers) as response:
                if response.status_code == httpx.codes.REQUESTED_RANGE_NOT_SATISFIABLE and offset:
                    # The part file already holds every byte: verification decides.
                    return await asyncio.to_thread(sha256_of, part)
                offset = self._start_offset(spec, response, offset)
                total = self._total(spec, response, offset)
                if total is not None:
                    check_disk(self._settings, total - offset, f"model {spec.name!r}")
                digest = await asyncio.to_thread(sha256_of, part) if offset else hashlib.sha256()
                done = offset
                progress(spec.name, done, total, "resuming" if offset else "downloading")
                with part.open("ab" if offset else "wb") as handle:
                    # Unbuffered: bytes received before a dropped connection must reach
                    # the part file, or the next try cannot resume from them.
                    async for chunk in response.aiter_bytes():
                        handle.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        progress(spec.name, done, total, "downloading")
        except httpx.HTTPError as error:
            raise DownloadError(
                f"model {spec.name!r}: download from {spec.url} stopped at {done} bytes "
                f"({type(error).__name__}: {error}); the next try resumes from there"
            ) from error
        if spec.size is not None and done != spec.size:
            raise DownloadError(
                f"model {spec.name!r}: {spec.url} sent {done} bytes but the manifest says "
                f"{spec.size}; fix the manifest's size or the URL"
            )
        return digest

    @staticmethod
    def _start_offset(spec: ModelSpec, response: httpx.Response, offset: int) -> int:
        if response.status_code == httpx.codes.PARTIAL_CONTENT:
            content_range = response.headers.get("content-range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DownloadError(
                    f"model {spec.name!r}: asked {spec.url} for bytes {offset}- but got "
                    f"Content-Range {content_range!r}"
                )
            return offset
        if response.status_code == httpx.codes.OK:
            return 0  # the server ignored Range: start over
        raise DownloadError(
            f"model {spec.name!r}: GET {spec.url} answered HTTP {response.status_code}; "
            "check the URL (and any token it needs)"
        )

    @staticmethod
    def _total(spec: ModelSpec, response: httpx.Response, offset: int) -> int | None:
        length = response.headers.get("content-length")
        total = offset + int(length) if length is not None and length.isdigit() else spec.size
        if spec.size is not None and total is not None and total != spec.size:
            raise DownloadError(
                f"model {spec.name!r}: {spec.url} serves {total} bytes but the manifest says "
                f"{spec.size}; fix the manifest's size or the URL"
            )
        return total
