"""``GET /assets/{bucket}/{key}``: the files of the local asset store, to any API key.

This is what a ``local`` asset's URL points at (``EMP_STORAGE_PUBLIC_URL``, by default
``http://127.0.0.1:3331/assets``). The key may also come as ``?token=`` because an ``<img>``
or ``<video>`` tag cannot send a header. Assets are job outputs of any type, so they are
served with ``nosniff`` and a sandboxing CSP: an HTML or SVG output cannot run script on the
API's origin.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from emp_queue.api.auth import ApiKey, Principal, authenticated, bearer_secret
from emp_queue.api.error_handlers import STREAM_ERRORS
from emp_queue.api.state import ApiState, State
from emp_queue.errors import JobNotFoundError
from emp_queue.storage import LocalDirectoryBackend
from emp_queue.storage.object_store import ObjectStoreBackend
from emp_queue.storage.uploads import upload_owner

router = APIRouter(tags=["assets"])

ASSET_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}
_CACHE_HEADERS: dict[str, Any] = {
    "ETag": {"description": "Changes when the file changes.", "schema": {"type": "string"}},
    "Cache-Control": {"description": "private, max-age=<seconds>", "schema": {"type": "string"}},
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, with the content type its name implies.",
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        "headers": _CACHE_HEADERS,
    },
    304: {"description": "Not modified: the If-None-Match ETag is current."},
    **STREAM_ERRORS,
}


class AssetReader(ApiKey):
    """Any valid key, from the ``Authorization`` header or the ``token`` query parameter."""

    async def __call__(
        self,
        request: Request,
        token: Annotated[
            str | None,
            Query(
                max_length=512,
                description="The API key, for clients that cannot send an Authorization "
                "header (an <img> tag); the header wins when both are given.",
            ),
        ] = None,
    ) -> Principal:
        return await authenticated(request, bearer_secret(request) or token)


async def owns_asset(state: ApiState, reader: Principal, key: str) -> bool:
    """Whether ``key`` belongs to the reader's customer: an upload
    (``uploads/<customer>/<upload id>/<name>``) names its customer; an output belongs to the
    job that stored it (``<prefix>/<job id>/<name>``, the layout ``AssetStorage`` writes).

    The key is checked as the file will be found: a key with an empty, ``.`` or ``..`` segment
    (which the path would normalise away, so that ``<other job>/./x.png`` reads another
    job's file) is refused, never reinterpreted."""
    if (uploader := upload_owner(key)) is not None:  # an upload names its customer
        return reader.sees_customer(uploader)
    parts = key.split("/")
    if len(parts) < 2 or any(part in ("", ".", "..") for part in parts):
        return False
    try:
        job = await state.queue.get(parts[-2])
    except JobNotFoundError:
        return False
    return reader.sees_customer(job.customer_id)


def not_found(bucket: str, key: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"no asset {key!r} in bucket {bucket!r}; it was never stored here, or was removed",
    )


def find_file(root: Path, bucket: str, key: str) -> tuple[Path, os.stat_result] | None:
    """The regular file at ``bucket``/``key`` inside ``root``, or None.

    ``safe_key`` (through the backend's ``path``) refuses ``..`` and absolute keys; resolving
    the result also refuses a symlink that leads out of ``root``.
    """
    try:
        path = LocalDirectoryBackend(root, "").path(bucket, key).resolve(strict=True)
        if not path.is_relative_to(root.resolve()):
            return None
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return (path, stat) if path.is_file() else None


def matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison, as If-None-Match asks for."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.get(
    "/assets/{bucket}/{key:path}",
    summary="Download a stored asset",
    response_class=FileResponse,
    responses=RESPONSES,
)
async def asset(
    bucket: str,
    key: str,
    reader: Annotated[Principal, Depends(AssetReader())],
    state: State,
    if_none_match: Annotated[str | None, Header(max_length=256)] = None,
) -> Response:
    """A job output stored by the ``local`` provider (the URL its result holds). A client
    key reads only its own customer's outputs."""
    if reader.customer_id is not None and not await owns_asset(state, reader, key):
        raise not_found(bucket, key)
    storage = state.settings.storage
    found = await asyncio.to_thread(find_file, storage.local_dir, bucket, key)
    if found is None:
        raise not_found(bucket, key)
    path, stat = found
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        **ASSET_HEADERS,
        "Cache-Control": f"private, max-age={state.settings.assets_max_age_s}",
    }
    response = FileResponse(path, stat_result=stat, media_type=media_type, headers=headers)
    etag = response.headers["etag"]
    if if_none_match is not None and matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={**headers, "ETag": etag})
    return response


SIGNED_URL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "Signed URL of the object."},
        "expires_in_s": {"type": "number", "description": "Seconds the URL stays valid."},
    },
    "required": ["url", "expires_in_s"],
}


@router.get(
    "/api/assets/{provider}/{bucket}/{key:path}",
    summary="Download a stored output from S3, GCS or Azure",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    responses={
        307: {"description": "To a short-lived signed URL of the object (the bucket is private)."},
        200: {
            "description": "With ?redirect=false: the signed URL as JSON.",
            "content": {"application/json": {"schema": SIGNED_URL_SCHEMA}},
        },
        **STREAM_ERRORS,
    },
)
async def signed_asset(
    provider: str,
    bucket: str,
    key: str,
    reader: Annotated[Principal, Depends(AssetReader())],
    state: State,
    redirect: Annotated[bool, Query(description="false: the URL as JSON.")] = True,
) -> Response:
    """An output stored in an object store, for its owner: the API checks that the key's
    job belongs to the caller's customer (admins and workers read any), then signs a URL
    valid for ``EMP_API_ASSET_URL_TTL_S`` with its own credentials. The bucket never needs
    to be public, and a URL handed to another customer stops working within minutes
    (decision 0017)."""
    if reader.customer_id is not None and not await owns_asset(state, reader, key):
        raise not_found(bucket, key)
    backend = state.storage.backends.get(provider)
    if isinstance(backend, LocalDirectoryBackend):
        return RedirectResponse(f"/assets/{bucket}/{key}", headers={"Cache-Control": "no-store"})
    if not isinstance(backend, ObjectStoreBackend):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no {provider!r} storage is configured on this API; set its EMP_STORAGE_* settings",
        )
    ttl_s = state.settings.asset_url_ttl_s
    url = await backend.signed_url(bucket, key, ttl_s)
    if not redirect:
        return JSONResponse(
            {"url": url, "expires_in_s": ttl_s}, headers={"Cache-Control": "no-store"}
        )
    return RedirectResponse(url, headers={"Cache-Control": "no-store"})
