"""Where job outputs go: object storage, never Redis. See ``docs/storage.md``."""

from emp_queue.storage.assets import AssetStorage, StorageTarget, StoredAsset
from emp_queue.storage.backends import AssetBackend, LocalDirectoryBackend
from emp_queue.storage.object_store import ObjectStoreBackend, TransferLimits
from emp_queue.storage.settings import StorageSettings, build_asset_storage

__all__ = [
    "AssetBackend",
    "AssetStorage",
    "LocalDirectoryBackend",
    "ObjectStoreBackend",
    "StorageSettings",
    "StorageTarget",
    "StoredAsset",
    "TransferLimits",
    "build_asset_storage",
]
