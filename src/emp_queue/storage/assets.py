"""Storing a job's outputs: content-addressed keys, hashes and the record a result holds."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emp_queue.connectors.base import job_fault, service_fault, validation_problems
from emp_queue.storage.backends import AssetBackend
from emp_queue.storage.uploads import UPLOADS_PREFIX, UploadRef, new_upload_key

_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True, slots=True)
class StoredAsset:
    """One stored output, as a job result refers to it."""

    url: str
    provider: str
    bucket: str
    key: str
    size: int
    content_type: str
    sha256: str

    def as_result(self) -> dict[str, Any]:
        """The record a result holds; an object-store output also names ``download``, the
        API route that gives its owner a signed URL (its plain ``url`` reads nothing from a
        private bucket)."""
        record = asdict(self)
        if self.provider != "local":
            record["download"] = f"/api/assets/{self.provider}/{self.bucket}/{self.key}"
        return record


class StorageTarget(BaseModel):
    """Where a job wants its outputs: the job's ``ctx.storage`` (every field optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str | None = None
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$")
    prefix: str = Field(default="", max_length=512, pattern=r"^[A-Za-z0-9._/-]*$")
    filename: str | None = Field(default=None, pattern=_FILENAME.pattern)
    cdn_url: str | None = Field(default=None, pattern=r"^https?://")

    @field_validator("prefix")
    @classmethod
    def _not_uploads(cls, prefix: str) -> str:
        if prefix.strip("/").split("/")[0] == UPLOADS_PREFIX:
            raise ValueError(f"the prefix {UPLOADS_PREFIX!r} is reserved for client uploads")
        return prefix


class AssetStorage:
    """The configured backends, and the rule that turns a job's output into a stored asset.

    Keys are ``<prefix>/<job id>/<name>``: the job's ``filename`` (numbered after the first
    output) or the content's SHA-256 with an extension from the content type, so a retried
    attempt overwrites its own outputs instead of piling up new ones.
    """

    def __init__(
        self, backends: dict[str, AssetBackend], default_provider: str, default_bucket: str
    ) -> None:
        if default_provider not in backends:
            raise ValueError(f"default provider {default_provider!r} is not configured")
        self.backends = backends
        self.default_provider = default_provider
        self.default_bucket = default_bucket

    def target(self, ctx: dict[str, Any]) -> StorageTarget:
        """The job's ``ctx.storage``, validated; a bad one is the job's fault."""
        raw = ctx.get("storage") or {}
        try:
            target = StorageTarget.model_validate(raw)
        except ValidationError as error:
            raise job_fault(
                f"invalid ctx.storage: {validation_problems(error, 'storage')}"
            ) from error
        provider = target.provider or self.default_provider
        if provider not in self.backends:
            raise job_fault(
                f"ctx.storage.provider {provider!r} is not configured on this worker; "
                f"configured: {', '.join(sorted(self.backends))}"
            )
        return target

    async def store(
        self,
        job_id: str,
        ctx: dict[str, Any],
        data: bytes,
        *,
        content_type: str,
        filename: str | None = None,
        index: int = 0,
    ) -> StoredAsset:
        target = self.target(ctx)
        provider = target.provider or self.default_provider
        backend = self.backends[provider]
        bucket = target.bucket or self.default_bucket
        digest = hashlib.sha256(data).hexdigest()
        name = self._name(target.filename, filename, index, digest, content_type)
        key = "/".join(part for part in (target.prefix.strip("/"), job_id, name) if part)
        await backend.put(bucket, key, data, content_type)
        url = f"{target.cdn_url.rstrip('/')}/{key}" if target.cdn_url else backend.url(bucket, key)
        return StoredAsset(url, provider, bucket, key, len(data), content_type, digest)

    async def store_upload(
        self, customer_id: str, data: bytes, *, content_type: str, name: str
    ) -> tuple[UploadRef, StoredAsset]:
        """Store a client's upload (already checked) in the default provider and bucket,
        under ``uploads/<customer>/<upload id>/<name>``."""
        ref = UploadRef(
            self.default_provider, self.default_bucket, new_upload_key(customer_id, name)
        )
        backend = self.backends[ref.provider]
        await backend.put(ref.bucket, ref.key, data, content_type)
        digest = hashlib.sha256(data).hexdigest()
        url = backend.url(ref.bucket, ref.key)
        return ref, StoredAsset(
            url, ref.provider, ref.bucket, ref.key, len(data), content_type, digest
        )

    async def read_upload(self, ref: str, customer_id: str | None) -> bytes:
        """The bytes of upload ``ref`` for a job of ``customer_id``; another customer's upload,
        like a missing one, is the job's fault."""
        upload = UploadRef.parse(ref)
        upload.check_owner(customer_id)
        backend = self.backends.get(upload.provider)
        if backend is None:
            raise service_fault(
                f"upload {ref!r} is in {upload.provider} storage, which this worker does not "
                f"have; configure EMP_STORAGE_{upload.provider.upper()}_* on the workers",
                provider=upload.provider,
            )
        data = await backend.get(upload.bucket, upload.key)
        if data is None:
            raise upload.missing()
        return data

    async def delete_uploads(self, customer_id: str) -> int:
        """Remove every upload of ``customer_id`` from the default provider and bucket (where
        uploads are stored); the number of files removed."""
        backend = self.backends[self.default_provider]
        return await backend.delete_prefix(self.default_bucket, f"{UPLOADS_PREFIX}/{customer_id}/")

    @staticmethod
    def _name(
        wanted: str | None, suggested: str | None, index: int, digest: str, content_type: str
    ) -> str:
        if wanted:
            if index == 0:
                return wanted
            stem, dot, ext = wanted.rpartition(".")
            return f"{stem}-{index}.{ext}" if dot and stem else f"{wanted}-{index}"
        if suggested and _FILENAME.match(suggested):
            return suggested
        extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".bin"
        return f"{digest[:32]}{extension}"
