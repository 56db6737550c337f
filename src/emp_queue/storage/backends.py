"""Asset backends: a place that stores bytes under a key and tells the URL they are served at."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath

from emp_queue.errors import ConfigurationError


class AssetBackend(ABC):
    """One storage provider holding one or more buckets."""

    provider: str

    @abstractmethod
    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``bucket``/``key``, replacing what was there."""

    @abstractmethod
    def url(self, bucket: str, key: str) -> str:
        """The URL the stored object is fetched from."""

    async def get(self, bucket: str, key: str) -> bytes | None:
        """The bytes at ``bucket``/``key``; None when nothing is there."""
        raise NotImplementedError(f"the {self.provider} backend cannot read assets")

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix`` (a folder: ends with ``/``);
        the number removed."""
        raise NotImplementedError(f"the {self.provider} backend cannot delete assets")

    async def delete(self, bucket: str, key: str) -> bool:
        """Remove ``bucket``/``key``; False when nothing was there. A backend that cannot
        delete says so rather than pretending it did."""
        raise NotImplementedError(f"the {self.provider} backend cannot delete assets")


def safe_key(key: str) -> PurePosixPath:
    """``key`` as a relative path with no ``..``, absolute or empty parts."""
    path = PurePosixPath(key)
    if path.is_absolute() or not path.parts or any(p in ("..", ".", "") for p in path.parts):
        raise ValueError(f"invalid asset key {key!r}")
    return path


class LocalDirectoryBackend(AssetBackend):
    """Files under ``root/<bucket>/<key>``, served by the API under ``/assets``.

    The default on one machine. Writes go to a temporary file renamed into place, so a
    reader never sees half an asset.
    """

    provider = "local"

    def __init__(self, root: Path, public_url: str) -> None:
        self.root = root
        self.public_url = public_url.rstrip("/")

    def path(self, bucket: str, key: str) -> Path:
        return self.root.joinpath(*safe_key(f"{bucket}/{key}").parts)

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self.path(bucket, key), data)

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, target)
        except OSError as error:
            raise ConfigurationError(f"cannot write asset {target}: {error}") from error

    def url(self, bucket: str, key: str) -> str:
        return f"{self.public_url}/{bucket}/{key}"

    async def get(self, bucket: str, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path(bucket, key).read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as error:
            raise ConfigurationError(f"cannot read asset {bucket}/{key}: {error}") from error

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        folder = self.path(bucket, prefix.rstrip("/"))
        return await asyncio.to_thread(self._remove_tree, folder)

    @staticmethod
    def _remove_tree(folder: Path) -> int:
        if not folder.is_dir() or folder.is_symlink():
            return 0
        files = [path for path in folder.rglob("*") if path.is_file() or path.is_symlink()]
        shutil.rmtree(folder)
        return len(files)

    async def delete(self, bucket: str, key: str) -> bool:
        target = self.path(bucket, key)
        try:
            await asyncio.to_thread(target.unlink)
        except FileNotFoundError:
            return False
        return True
