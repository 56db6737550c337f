"""Where job outputs go: object storage, never Redis. See ``docs/storage.md``."""

from emp_queue.storage.assets import AssetStorage, StorageTarget, StoredAsset
from emp_queue.storage.backends import AssetBackend, LocalDirectoryBackend

__all__ = [
    "AssetBackend",
    "AssetStorage",
    "LocalDirectoryBackend",
    "StorageTarget",
    "StoredAsset",
]
