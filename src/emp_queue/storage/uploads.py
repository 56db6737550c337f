"""Job inputs a client uploads: checked before they are stored, kept under their customer, and
named by a reference a payload carries (``s3://assets/uploads/acme/up-…/in.png``).

The reference says where the bytes are; the customer in its key says whose they are. A worker
reads an upload only for a job of that customer (:meth:`UploadRef.check_owner`), so a reference
copied into another customer's job reads nothing. See ``docs/storage.md`` and decision 0044.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from emp_queue.connectors.base import job_fault
from emp_queue.errors import JobFailedError

UPLOADS_PREFIX = "uploads"
"""First segment of every upload's key; reserved: a job's ``ctx.storage.prefix`` cannot use it."""

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
_CUSTOMER = r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}"
_UPLOAD_ID = r"up-[0-9a-f]{24}"
UPLOAD_KEY = re.compile(rf"^{UPLOADS_PREFIX}/(?P<customer>{_CUSTOMER})/{_UPLOAD_ID}/{_NAME}$")
UPLOAD_REF = re.compile(
    r"^(?P<provider>local|s3|gcs|azure)://(?P<bucket>[a-z0-9][a-z0-9._-]{1,62})/(?P<key>.+)$"
)
FILENAME = re.compile(rf"^{_NAME}$")


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda data: data[:4] == b"RIFF" and data[8:12] == kind


def _starts(*signatures: bytes) -> Callable[[bytes], bool]:
    return lambda data: data.startswith(signatures)


CONTENT_CHECKS: dict[str, Callable[[bytes], bool]] = {
    "image/png": _starts(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": _starts(b"\xff\xd8\xff"),
    "image/gif": _starts(b"GIF87a", b"GIF89a"),
    "image/webp": _riff(b"WEBP"),
    "audio/wav": _riff(b"WAVE"),
    "audio/mpeg": lambda data: data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3"),
    "audio/flac": _starts(b"fLaC"),
    "audio/ogg": _starts(b"OggS"),
    "video/mp4": lambda data: data[4:8] == b"ftyp",
    "video/webm": _starts(b"\x1a\x45\xdf\xa3"),
    "application/pdf": _starts(b"%PDF-"),
    "application/json": _json,
    "text/plain": _utf8,
}
"""Every type an upload may have, with the test its bytes must pass: a file is what it says it
is before it is stored (a renamed executable is not an image)."""


class UploadRefusedError(ValueError):
    """An upload the API does not store; the message says why and what to send instead."""


class UnsupportedUploadTypeError(UploadRefusedError):
    """The upload names no type, or one uploads do not accept."""


def checked_type(content_type: str | None, data: bytes, allowed: frozenset[str]) -> str:
    """The upload's media type, once its bytes are known to be of that type."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if not media_type:
        raise UnsupportedUploadTypeError(
            "the upload has no Content-Type; send the file's type, e.g. Content-Type: image/png"
        )
    if media_type not in allowed or media_type not in CONTENT_CHECKS:
        form = (
            "; send the file itself as the body, not a form"
            if media_type.startswith("multipart/")
            else ""
        )
        raise UnsupportedUploadTypeError(
            f"uploads of type {media_type!r} are not accepted{form}; accepted: "
            f"{', '.join(sorted(allowed & CONTENT_CHECKS.keys()))}"
        )
    if not data:
        raise UploadRefusedError("the upload is empty; send the file's bytes as the request body")
    if not CONTENT_CHECKS[media_type](data):
        raise UploadRefusedError(
            f"the upload's bytes are not {media_type}; send the file's real type as Content-Type"
        )
    return media_type


def upload_name(filename: str | None, content_type: str) -> str:
    """The stored name: the client's (checked), with an extension that implies the type, so a
    store that keeps no content type (the local directory) still knows it."""
    if filename is not None and not FILENAME.match(filename):
        raise UploadRefusedError(
            f"filename {filename!r} is not allowed; use letters, digits, '.', '_' and '-' "
            "(up to 200 characters, starting with a letter or digit)"
        )
    name = filename or "input"
    if mimetypes.guess_type(name)[0] != content_type:
        name = f"{name}{mimetypes.guess_extension(content_type) or ''}"
    return name[:200]


def upload_owner(key: str) -> str | None:
    """The customer whose upload ``key`` is; None when it is not an upload's key."""
    found = UPLOAD_KEY.match(key)
    return found["customer"] if found else None


def new_upload_key(customer_id: str, name: str) -> str:
    return f"{UPLOADS_PREFIX}/{customer_id}/up-{secrets.token_hex(12)}/{name}"


@dataclass(frozen=True, slots=True)
class UploadRef:
    """Where an upload is: ``<provider>://<bucket>/<key>``, as payloads carry it."""

    provider: str
    bucket: str
    key: str

    @classmethod
    def parse(cls, ref: str) -> UploadRef:
        """The reference; one that does not name an upload is the job's fault."""
        found = UPLOAD_REF.match(ref)
        if found is None or not UPLOAD_KEY.match(found["key"]):
            raise job_fault(
                f"{ref!r} is not an upload reference; use the 'ref' POST /api/uploads returned "
                "(<provider>://<bucket>/uploads/<customer>/<upload id>/<name>)"
            )
        return cls(found["provider"], found["bucket"], found["key"])

    @property
    def customer_id(self) -> str:
        return self.key.split("/")[1]

    @property
    def content_type(self) -> str:
        """The upload's type, which its stored name implies (:func:`upload_name`)."""
        return mimetypes.guess_type(self.key)[0] or "application/octet-stream"

    def check_owner(self, customer_id: str | None) -> None:
        """Refuse a reference to another customer's upload, exactly as a missing one."""
        if customer_id != self.customer_id:
            raise self.missing()

    def missing(self) -> JobFailedError:
        return job_fault(
            f"no upload {str(self)!r} for this job's customer; upload the file again "
            "(POST /api/uploads with this customer's key) and use the reference it returns"
        )

    def __str__(self) -> str:
        return f"{self.provider}://{self.bucket}/{self.key}"
