"""Settings of the asset store, read from ``EMP_STORAGE_*``, and the storage they build.

The local directory is always configured (the API serves it); each cloud provider is added
when its settings are present, so one worker can honour jobs that ask for different providers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.storage.assets import AssetStorage
from emp_queue.storage.backends import AssetBackend, LocalDirectoryBackend
from emp_queue.storage.object_store import ObjectStoreBackend, TransferLimits

DEFAULT_LOCAL_PUBLIC_URL = "http://127.0.0.1:3331/assets"


def default_local_dir() -> Path:
    return platformdirs.user_data_path("emp-job-queue") / "assets"


class StorageSettings(BaseSettings):
    """Where job outputs go unless a job's ``ctx.storage`` says otherwise."""

    model_config = SettingsConfigDict(env_prefix="EMP_STORAGE_", extra="ignore", frozen=True)

    provider: Literal["local", "s3", "gcs", "azure"] = Field(
        default="local", description="Provider of jobs that do not name one in ctx.storage."
    )
    bucket: str = Field(
        default="assets",
        pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$",
        description="Bucket (Azure: container) of jobs that do not name one.",
    )
    local_dir: Path = Field(
        default_factory=default_local_dir,
        description="Root of the local provider: files live at <local_dir>/<bucket>/<key>.",
    )
    public_url: str = Field(
        default=DEFAULT_LOCAL_PUBLIC_URL,
        pattern=r"^https?://",
        description="URL prefix the API serves local assets under (its /assets route).",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Limit of one cloud request.")
    max_retries: int = Field(default=3, ge=0, description="Retries of a failed cloud request.")
    retry_timeout_s: float = Field(
        default=30.0, gt=0, description="Time after which a failing upload stops retrying."
    )

    s3_endpoint: str | None = Field(
        default=None, description="S3-compatible endpoint (R2, MinIO); unset for AWS."
    )
    s3_region: str | None = Field(default=None, description="AWS region (e.g. us-east-1).")
    s3_access_key_id: str | None = Field(default=None, description="Else AWS_* / instance role.")
    s3_secret_access_key: SecretStr | None = None
    s3_allow_http: bool = Field(default=False, description="Allow an http:// endpoint.")
    s3_public_url: str | None = Field(
        default=None,
        description="URL template of a stored object; default {endpoint}/{bucket}/{key} "
        "with an endpoint, else https://{bucket}.s3.{region}.amazonaws.com/{key}.",
    )

    gcs_service_account_path: Path | None = Field(
        default=None, description="Service-account JSON key file of Google Cloud Storage."
    )
    gcs_public_url: str | None = Field(
        default=None, description="Default https://storage.googleapis.com/{bucket}/{key}."
    )

    azure_account: str | None = Field(default=None, description="Azure storage account name.")
    azure_access_key: SecretStr | None = None
    azure_public_url: str | None = Field(
        default=None,
        description="Default https://{account}.blob.core.windows.net/{bucket}/{key}.",
    )

    @property
    def limits(self) -> TransferLimits:
        return TransferLimits(
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            retry_timeout_s=self.retry_timeout_s,
        )


MISSING_PROVIDER_HINT = {
    "s3": "set EMP_STORAGE_S3_ENDPOINT (R2, MinIO, ...) or EMP_STORAGE_S3_REGION (AWS)",
    "gcs": "set EMP_STORAGE_GCS_SERVICE_ACCOUNT_PATH",
    "azure": "set EMP_STORAGE_AZURE_ACCOUNT (and EMP_STORAGE_AZURE_ACCESS_KEY)",
}


def build_asset_storage(settings: StorageSettings) -> AssetStorage:
    """The local directory plus every cloud provider ``settings`` configure.

    Raises :class:`ConfigurationError` when the default provider is not configured or a
    provider's settings are incomplete, naming the variable to set.
    """
    backends: dict[str, AssetBackend] = {
        "local": LocalDirectoryBackend(settings.local_dir, settings.public_url)
    }
    for cloud in (_s3(settings), _gcs(settings), _azure(settings)):
        if cloud is not None:
            _check_buildable(cloud, settings.bucket)
            backends[cloud.provider] = cloud
    if settings.provider not in backends:
        raise ConfigurationError(
            f"EMP_STORAGE_PROVIDER={settings.provider!r} but {settings.provider} storage is not "
            f"configured: {MISSING_PROVIDER_HINT[settings.provider]}, or use "
            f"EMP_STORAGE_PROVIDER=local"
        )
    return AssetStorage(backends, settings.provider, settings.bucket)


def _check_buildable(backend: ObjectStoreBackend, bucket: str) -> None:
    """Build the default bucket's store now, so a malformed key file stops the process at
    start instead of failing every job that uploads."""
    try:
        backend.store(bucket)
    except JobFailedError as error:
        raise ConfigurationError(str(error)) from error


def _s3(settings: StorageSettings) -> ObjectStoreBackend | None:
    secret = settings.s3_secret_access_key
    if not (settings.s3_endpoint or settings.s3_region or settings.s3_access_key_id):
        if secret is not None:
            raise ConfigurationError(
                "EMP_STORAGE_S3_SECRET_ACCESS_KEY is set but S3 is not configured: set "
                "EMP_STORAGE_S3_ENDPOINT or EMP_STORAGE_S3_REGION and EMP_STORAGE_S3_ACCESS_KEY_ID"
            )
        return None
    if (settings.s3_access_key_id is None) != (secret is None):
        raise ConfigurationError(
            "S3 credentials need both EMP_STORAGE_S3_ACCESS_KEY_ID and "
            "EMP_STORAGE_S3_SECRET_ACCESS_KEY (or neither, to use AWS_* or the instance role)"
        )
    endpoint = settings.s3_endpoint
    if endpoint and endpoint.startswith("http://") and not settings.s3_allow_http:
        raise ConfigurationError(
            f"EMP_STORAGE_S3_ENDPOINT={endpoint!r} is plain http; use https "
            "or set EMP_STORAGE_S3_ALLOW_HTTP=true (a local MinIO, a test server)"
        )
    return ObjectStoreBackend.s3(
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret else None,
        allow_http=settings.s3_allow_http,
        public_url=settings.s3_public_url,
        limits=settings.limits,
    )


def _gcs(settings: StorageSettings) -> ObjectStoreBackend | None:
    path = settings.gcs_service_account_path
    if path is None:
        return None
    if not path.is_file():
        raise ConfigurationError(
            f"EMP_STORAGE_GCS_SERVICE_ACCOUNT_PATH={str(path)!r} is not a file; point it at "
            "the service account's JSON key"
        )
    return ObjectStoreBackend.gcs(
        service_account_path=path, public_url=settings.gcs_public_url, limits=settings.limits
    )


def _azure(settings: StorageSettings) -> ObjectStoreBackend | None:
    if settings.azure_account is None:
        if settings.azure_access_key is not None:
            raise ConfigurationError(
                "EMP_STORAGE_AZURE_ACCESS_KEY is set without EMP_STORAGE_AZURE_ACCOUNT; set both"
            )
        return None
    key = settings.azure_access_key
    return ObjectStoreBackend.azure(
        account=settings.azure_account,
        access_key=key.get_secret_value() if key else None,
        public_url=settings.azure_public_url,
        limits=settings.limits,
    )
