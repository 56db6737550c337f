"""Cloud object stores (S3-compatible, Google Cloud Storage, Azure Blob) as asset backends.

All three go through obstore (Rust ``object_store`` underneath): one client library, one error
model and real async uploads for every provider, instead of three SDKs. See
``docs/decisions/0004-obstore-for-object-storage.md``.

An upload that fails for any reason outside the job (bad credentials, missing bucket, network)
is a *service fault*: the job is retried, preferably by a worker with working storage. Raw
obstore exceptions never escape, so the worker records a message a person can act on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import obstore
import structlog
from obstore.exceptions import (
    BaseError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import AzureStore, GCSStore, S3Store

from emp_queue.connectors.base import service_fault
from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.storage.backends import AssetBackend, safe_key

if TYPE_CHECKING:
    from obstore.store import AzureConfig, ClientConfig, GCSConfig, RetryConfig, S3Config

log = structlog.get_logger(__name__)

CloudProvider = Literal["s3", "gcs", "azure"]
Store = S3Store | GCSStore | AzureStore
StoreFactory = Callable[[str], Store]
"""Builds the store of one bucket (an Azure container) from its name."""

AWS_PUBLIC_URL = "https://{bucket}.s3.{region}.amazonaws.com/{key}"
PATH_STYLE_PUBLIC_URL = "{endpoint}/{bucket}/{key}"
GCS_PUBLIC_URL = "https://storage.googleapis.com/{bucket}/{key}"
AZURE_PUBLIC_URL = "https://{account}.blob.core.windows.net/{bucket}/{key}"

_PLACEHOLDER = re.compile(r"{(\w*)}")
_ERROR_CODE = re.compile(r"<Code>(\w+)</Code>")


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """How long one upload may take, retries included, before the job is given back.

    obstore's own default retries for three minutes; a worker holding a lease should rather
    fail fast and let another worker try.
    """

    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_retries: int = 3
    retry_timeout_s: float = 30.0

    def client_options(self, *, allow_http: bool = False) -> ClientConfig:
        return {
            "timeout": timedelta(seconds=self.timeout_s),
            "connect_timeout": timedelta(seconds=self.connect_timeout_s),
            "allow_http": allow_http,
        }

    def retry_config(self) -> RetryConfig:
        return {
            "max_retries": self.max_retries,
            "retry_timeout": timedelta(seconds=self.retry_timeout_s),
        }


class ObjectStoreBackend(AssetBackend):
    """One cloud provider; one obstore store per bucket, built on first use and kept.

    ``public_url`` is a template of the URL an object is read from, with the placeholders
    ``{bucket}`` and ``{key}`` (URL-quoted, ``/`` kept) plus the provider's ``url_values``
    (``{endpoint}``, ``{region}``, ``{account}``). A CDN or a bucket's custom domain is just
    another template (``https://cdn.example.com/{key}``); a job's ``ctx.storage.cdn_url``
    overrides it for that job.
    """

    def __init__(
        self,
        provider: CloudProvider,
        make_store: StoreFactory,
        public_url: str,
        url_values: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.public_url = public_url
        self._url_values = dict(url_values or {})
        known = {"bucket", "key", *self._url_values}
        unknown = set(_PLACEHOLDER.findall(public_url)) - known
        if unknown or "{key}" not in public_url:
            raise ConfigurationError(
                f"the {provider} public URL template {public_url!r} must contain {{key}} and "
                f"may use only {', '.join(sorted(f'{{{name}}}' for name in known))}; "
                f"set EMP_STORAGE_{provider.upper()}_PUBLIC_URL"
            )
        self._make_store = make_store
        self._stores: dict[str, Store] = {}

    @classmethod
    def s3(
        cls,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        allow_http: bool = False,
        public_url: str | None = None,
        limits: TransferLimits | None = None,
    ) -> ObjectStoreBackend:
        """AWS S3 (``region``) or any S3-compatible service (``endpoint``: R2, MinIO, ...).

        Credentials left out come from the usual ``AWS_*`` variables or the instance role.
        With an ``endpoint`` requests are path-style (``{endpoint}/{bucket}/{key}``), which
        every S3-compatible server understands.
        """
        limits = limits or TransferLimits()
        config: S3Config = {}
        if endpoint:
            config["endpoint"] = endpoint.rstrip("/")
            config["virtual_hosted_style_request"] = False
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        options = limits.client_options(allow_http=allow_http)

        def make_store(bucket: str) -> Store:
            of_bucket: S3Config = {**config, "bucket": bucket}
            return S3Store(client_options=options, retry_config=limits.retry_config(), **of_bucket)

        default_url = PATH_STYLE_PUBLIC_URL if endpoint else AWS_PUBLIC_URL
        values = {"endpoint": (endpoint or "").rstrip("/"), "region": region or "us-east-1"}
        return cls("s3", make_store, public_url or default_url, values)

    @classmethod
    def gcs(
        cls,
        *,
        service_account_path: Path | None = None,
        public_url: str | None = None,
        limits: TransferLimits | None = None,
    ) -> ObjectStoreBackend:
        """Google Cloud Storage; without a key file, application default credentials apply."""
        limits = limits or TransferLimits()
        config: GCSConfig = {}
        if service_account_path is not None:
            config["service_account"] = str(service_account_path)

        def make_store(bucket: str) -> Store:
            of_bucket: GCSConfig = {**config, "bucket": bucket}
            return GCSStore(
                client_options=limits.client_options(),
                retry_config=limits.retry_config(),
                **of_bucket,
            )

        return cls("gcs", make_store, public_url or GCS_PUBLIC_URL)

    @classmethod
    def azure(
        cls,
        *,
        account: str,
        access_key: str | None = None,
        public_url: str | None = None,
        limits: TransferLimits | None = None,
    ) -> ObjectStoreBackend:
        """Azure Blob Storage; a job's bucket is a container of ``account``."""
        limits = limits or TransferLimits()
        config: AzureConfig = {"account_name": account}
        if access_key:
            config["account_key"] = access_key

        def make_store(bucket: str) -> Store:
            of_container: AzureConfig = {**config, "container_name": bucket}
            return AzureStore(
                client_options=limits.client_options(),
                retry_config=limits.retry_config(),
                **of_container,
            )

        return cls("azure", make_store, public_url or AZURE_PUBLIC_URL, {"account": account})

    def store(self, bucket: str) -> Store:
        """The store of ``bucket``, built once: its HTTP connections are reused across jobs."""
        store = self._stores.get(bucket)
        if store is None:
            try:
                store = self._make_store(bucket)
            except (BaseError, ValueError) as error:
                raise service_fault(
                    f"cannot set up {self.provider} storage for bucket {bucket!r}: "
                    f"{summary(error)}; check the EMP_STORAGE_{self.provider.upper()}_* settings",
                    provider=self.provider,
                    bucket=bucket,
                ) from error
            self._stores[bucket] = store
        return store

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        path = str(safe_key(key))
        store = self.store(bucket)
        try:
            await obstore.put_async(store, path, data, attributes={"Content-Type": content_type})
        except (BaseError, OSError) as error:
            raise self._upload_fault(bucket, path, error) from error
        log.debug("asset_uploaded", provider=self.provider, bucket=bucket, key=path, size=len(data))

    async def get(self, bucket: str, key: str) -> bytes | None:
        path = str(safe_key(key))
        store = self.store(bucket)
        try:
            result = await obstore.get_async(store, path)
            data = await result.bytes_async()
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as error:
            log.warning("asset_read_failed", provider=self.provider, bucket=bucket, key=path)
            raise service_fault(
                f"reading asset {path!r} from {self.provider} bucket {bucket!r} failed "
                f"({summary(error)}); check the EMP_STORAGE_{self.provider.upper()}_* settings",
                provider=self.provider,
                bucket=bucket,
                key=path,
            ) from error
        return data.to_bytes()

    async def delete(self, bucket: str, key: str) -> bool:
        path = str(safe_key(key))
        store = self.store(bucket)
        try:
            await obstore.head_async(store, path)
        except FileNotFoundError:
            return False
        await obstore.delete_async(store, path)
        log.info("asset_deleted", provider=self.provider, bucket=bucket, key=path)
        return True

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        store = self.store(bucket)
        removed = 0
        async for page in obstore.list(store, prefix=str(safe_key(prefix.rstrip("/")))):
            paths = [entry["path"] for entry in page]
            if paths:
                await obstore.delete_async(store, paths)
                removed += len(paths)
        log.info("assets_deleted", provider=self.provider, bucket=bucket, prefix=prefix, n=removed)
        return removed

    def _upload_fault(self, bucket: str, key: str, error: Exception) -> JobFailedError:
        where = f"{self.provider} bucket {bucket!r}"
        if isinstance(error, FileNotFoundError):
            reason = (
                f"{where} does not exist; create it, or point the job's ctx.storage.bucket "
                "or EMP_STORAGE_BUCKET at one that does"
            )
        elif isinstance(error, UnauthenticatedError | PermissionDeniedError):
            reason = (
                f"{where} refused this worker's credentials; check the "
                f"EMP_STORAGE_{self.provider.upper()}_* credentials and their permissions"
            )
        else:
            reason = f"{where} could not be reached or failed"
        log.warning(
            "asset_upload_failed",
            provider=self.provider,
            bucket=bucket,
            key=key,
            error_type=type(error).__name__,
        )
        return service_fault(
            f"uploading asset {key!r}: {reason} ({summary(error)})",
            provider=self.provider,
            bucket=bucket,
            key=key,
        )

    async def signed_url(self, bucket: str, key: str, expires_in_s: float) -> str:
        """A URL that reads the object for ``expires_in_s`` without credentials (the bucket
        stays private): signed with this backend's own credentials, nothing is requested."""
        path = str(safe_key(key))
        signed: str = await obstore.sign_async(
            self.store(bucket), "GET", path, timedelta(seconds=expires_in_s)
        )
        return signed

    def url(self, bucket: str, key: str) -> str:
        return self.public_url.format(bucket=bucket, key=quote(key, safe="/"), **self._url_values)


def summary(error: Exception) -> str:
    """The first line of an obstore error, with the service's error code when it sent one.

    obstore appends a multi-line debug dump (and S3 the whole XML body); a job's error
    message should stay one readable line.
    """
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    code = _ERROR_CODE.search(text)
    if code and code.group(1) not in first:
        first = f"{code.group(1)}: {first}"
    return first[:300]
