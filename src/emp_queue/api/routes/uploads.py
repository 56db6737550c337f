"""``POST /api/uploads``: a job's input file (an image for img2img, a file for a REST service),
stored in the asset store under its customer; the answer's ``ref`` goes in a payload.

The body is the file itself (``Content-Type`` its type), read up to ``EMP_API_MAX_UPLOAD_BYTES``
and checked against its type before anything is stored (decision 0044).
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from emp_queue.api.auth import ClientOrAdmin, Principal
from emp_queue.api.body_limit import BodyTooLargeError
from emp_queue.api.error_handlers import UPLOAD_ERRORS
from emp_queue.api.state import State
from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.models import NAME_PATTERN
from emp_queue.storage.uploads import (
    FILENAME,
    UnsupportedUploadTypeError,
    UploadRefusedError,
    checked_type,
    upload_name,
)

UPLOAD_PATH = "/api/uploads"

log = structlog.get_logger(__name__)

router = APIRouter(tags=["uploads"], responses=UPLOAD_ERRORS)


class UploadOut(BaseModel):
    ref: str = Field(
        description="Where the file is, for a payload: a ComfyUI input's `upload`, a REST "
        "job's `body_upload`. Only jobs of the same customer can read it."
    )
    customer_id: str
    provider: str
    bucket: str
    key: str
    size: int = Field(description="Bytes stored.")
    content_type: str
    sha256: str
    download: str = Field(description="GET it with the same key to read the file back.")


def owner(caller: Principal, customer: str | None) -> str:
    """The customer the upload belongs to: a client key's own; an admin names one."""
    if caller.customer_id is not None:
        if customer not in (None, caller.customer_id):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this key uploads for customer {caller.customer_id!r} only, not {customer!r}",
            )
        return caller.customer_id
    if customer is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "an upload belongs to a customer: name it with ?customer=<customer id> (only jobs "
            "of that customer can read the file)",
        )
    return customer


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused (413) as soon as it passes ``max_bytes``: a declared length is
    checked before a byte is read, a chunked body while it streams."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLargeError(max_bytes)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise BodyTooLargeError(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        log.info("upload_abandoned", received=received)
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "the client went away before the whole file arrived"
        ) from None
    return b"".join(chunks)


@router.post(
    UPLOAD_PATH,
    summary="Upload a job's input file",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The file's bytes; Content-Type is its media type.",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(
    request: Request,
    caller: ClientOrAdmin,
    state: State,
    content_type: Annotated[str | None, Header(max_length=200)] = None,
    filename: Annotated[
        str | None,
        Query(
            pattern=FILENAME.pattern,
            description="Name to keep (an extension is added to match the type when missing).",
        ),
    ] = None,
    customer: Annotated[
        str | None,
        Query(pattern=NAME_PATTERN, description="Admin keys: the customer the file is for."),
    ] = None,
) -> UploadOut:
    """Store one input file in the asset store (the API's default provider and bucket) under
    ``uploads/<customer>/<upload id>/<name>``, after checking its size and that its bytes are
    of its declared type. Put the answer's ``ref`` in a job's payload."""
    customer_id = owner(caller, customer)
    data = await read_body(request, state.settings.max_upload_bytes)
    try:
        media_type = checked_type(content_type, data, frozenset(state.settings.upload_types))
        name = upload_name(filename, media_type)
    except UnsupportedUploadTypeError as error:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error)) from error
    except UploadRefusedError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from error
    try:
        ref, stored = await state.storage.store_upload(
            customer_id, data, content_type=media_type, name=name
        )
    except (JobFailedError, ConfigurationError) as error:
        log.warning("upload_store_failed", customer_id=customer_id, error=str(error))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the asset store did not take the upload: {error}; try again later",
        ) from error
    log.info("upload_stored", customer_id=customer_id, key=ref.key, size=stored.size)
    return UploadOut(
        ref=str(ref),
        customer_id=customer_id,
        provider=ref.provider,
        bucket=ref.bucket,
        key=ref.key,
        size=stored.size,
        content_type=media_type,
        sha256=stored.sha256,
        download=f"/api/assets/{ref.provider}/{ref.bucket}/{ref.key}",
    )
