"""``POST /api/uploads``: job inputs stored under their customer, checked before they are stored,
read back only by that customer (#14 item 7)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.key_scope import Access
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.api.settings import ApiSettings
from emp_queue.client import AsyncClient, InvalidRequestError
from emp_queue.core.keys import Keys
from emp_queue.core.settings import CoreSettings
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import (
    AssetStorage,
    LocalDirectoryBackend,
    StorageSettings,
    build_asset_storage,
)
from tests.integration.api.conftest import ApiKeys, bearer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100
MAX_UPLOAD_BYTES = 4096


@pytest.fixture
def api_settings(storage_settings: StorageSettings) -> ApiSettings:
    return ApiSettings(
        rate_limit_per_s=None,
        sweep_interval_s=None,
        key_cache_s=0,
        storage=storage_settings,
        max_body_bytes=1024,  # smaller than an upload may be: the route has its own limit
        max_upload_bytes=MAX_UPLOAD_BYTES,
    )


@pytest.fixture
def storage(storage_settings: StorageSettings) -> AssetStorage:
    return build_asset_storage(storage_settings)


def stored_files(storage_settings: StorageSettings) -> list[Path]:
    return [path for path in storage_settings.local_dir.rglob("*") if path.is_file()]


async def upload(
    client: httpx.AsyncClient,
    secret: str,
    data: bytes = PNG,
    content_type: str | None = "image/png",
    **params: str,
) -> httpx.Response:
    headers = bearer(secret) | ({"Content-Type": content_type} if content_type else {})
    return await client.post("/api/uploads", content=data, headers=headers, params=params)


async def test_an_upload_is_stored_under_its_customer_and_read_back_by_it(
    client: httpx.AsyncClient,
    api_keys: ApiKeys,
    storage: AssetStorage,
    storage_settings: StorageSettings,
) -> None:
    answer = await upload(client, api_keys.acme, filename="in.png")

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["ref"].startswith("local://assets/uploads/acme/up-")
    assert body["ref"].endswith("/in.png")
    assert (body["customer_id"], body["size"], body["content_type"]) == (
        "acme",
        len(PNG),
        "image/png",
    )
    assert stored_files(storage_settings) == [storage_settings.local_dir / "assets" / body["key"]]
    assert await storage.read_upload(body["ref"], "acme") == PNG  # what a worker reads

    download = await client.get(body["download"], headers=bearer(api_keys.acme))
    assert download.status_code == 307
    served = await client.get(download.headers["location"], headers=bearer(api_keys.acme))
    assert served.content == PNG
    assert served.headers["content-type"] == "image/png"


async def test_another_customer_reads_nothing_of_an_upload(
    client: httpx.AsyncClient, api_keys: ApiKeys, storage: AssetStorage
) -> None:
    body = (await upload(client, api_keys.acme)).json()

    for path in (body["download"], f"/assets/{body['bucket']}/{body['key']}"):
        answer = await client.get(path, headers=bearer(api_keys.globex))
        assert answer.status_code == 404, path
    with pytest.raises(JobFailedError) as theirs:
        await storage.read_upload(body["ref"], "globex")  # a globex job given acme's ref
    never = "local://assets/uploads/globex/up-000000000000000000000000/in.png"
    with pytest.raises(JobFailedError) as missing:
        await storage.read_upload(never, "globex")
    assert theirs.value.failure_class is FailureClass.JOB_FAULT
    # The same answer as for an upload that does not exist: nothing to learn about acme's.
    assert str(theirs.value).replace(body["ref"], never) == str(missing.value)


async def test_a_type_the_bytes_do_not_match_is_refused_before_anything_is_stored(
    client: httpx.AsyncClient, api_keys: ApiKeys, storage_settings: StorageSettings
) -> None:
    cases = [
        (PNG, None, 415, "no Content-Type"),
        (PNG, "text/html", 415, "not accepted"),
        (PNG, "multipart/form-data; boundary=x", 415, "send the file itself as the body"),
        (JPEG, "image/png", 422, "not image/png"),
        (b"", "image/png", 422, "empty"),
        (b"\xff\xfe not utf-8", "text/plain", 422, "not text/plain"),
    ]
    for data, content_type, code, message in cases:
        answer = await upload(client, api_keys.acme, data, content_type)
        assert answer.status_code == code, (content_type, answer.text)
        assert message in answer.json()["message"]
    bad_name = await upload(client, api_keys.acme, filename="../x.png")
    assert bad_name.status_code == 422
    assert stored_files(storage_settings) == []


async def test_the_upload_limit_is_its_own_and_holds_for_streamed_bodies(
    client: httpx.AsyncClient, api_keys: ApiKeys, storage_settings: StorageSettings
) -> None:
    within = PNG + b"\x00" * (MAX_UPLOAD_BYTES - len(PNG))  # over max_body_bytes, at the limit
    assert (await upload(client, api_keys.acme, within)).status_code == 201

    too_big = within + b"\x00"
    declared = await upload(client, api_keys.acme, too_big)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(too_big), 1000):
            yield too_big[start : start + 1000]

    streamed = await client.post(
        "/api/uploads",
        content=chunks(),
        headers=bearer(api_keys.acme) | {"Content-Type": "image/png"},
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert str(MAX_UPLOAD_BYTES) in answer.json()["message"]
    assert len(stored_files(storage_settings)) == 1


async def test_uploads_belong_to_the_keys_customer_or_the_one_an_admin_names(
    client: httpx.AsyncClient, api_keys: ApiKeys
) -> None:
    unnamed = await upload(client, api_keys.admin)
    named = await upload(client, api_keys.admin, customer="globex")
    other = await upload(client, api_keys.acme, customer="globex")
    worker = await upload(client, api_keys.worker)

    assert unnamed.status_code == 422
    assert "?customer=" in unnamed.json()["message"]
    assert named.status_code == 201
    assert named.json()["customer_id"] == "globex"
    assert other.status_code == 403
    assert worker.status_code == 403


async def test_a_submit_only_key_uploads_and_a_read_only_key_does_not(
    client: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    store = ApiKeyStore(redis_client, Keys(namespace))
    submitter = await store.create(Role.CLIENT, customer_id="acme", access=Access.SUBMIT)
    reader = await store.create(Role.CLIENT, customer_id="acme", access=Access.READ)

    assert (await upload(client, submitter.secret)).status_code == 201
    refused = await upload(client, reader.secret)
    assert refused.status_code == 403
    assert "access is 'read'" in refused.json()["message"]


def test_a_job_cannot_write_its_outputs_among_the_uploads(storage: AssetStorage) -> None:
    with pytest.raises(JobFailedError, match="reserved for client uploads"):
        storage.target({"storage": {"prefix": "uploads/acme"}})
    assert storage.target({"storage": {"prefix": "my-uploads/acme"}}).prefix == "my-uploads/acme"


async def test_the_sdk_uploads_a_file_by_path_or_bytes(
    app: FastAPI, api_keys: ApiKeys, storage: AssetStorage, tmp_path: Path
) -> None:
    image = tmp_path / "my photo.png"
    image.write_bytes(PNG)
    sdk = AsyncClient("http://api.test", api_keys.acme, transport=httpx.ASGITransport(app=app))
    async with sdk:
        by_path = await sdk.upload(image)
        by_bytes = await sdk.upload(b"hello", content_type="text/plain")
        with pytest.raises(InvalidRequestError) as refused:
            await sdk.upload(JPEG, content_type="image/png")
        with pytest.raises(ValueError, match="pass content_type"):
            await sdk.upload(b"?")

    assert by_path["key"].endswith("/my-photo.png")
    assert await storage.read_upload(by_path["ref"], "acme") == PNG
    assert await storage.read_upload(by_bytes["ref"], "acme") == b"hello"
    assert refused.value.status_code == 422


class SlowBackend(LocalDirectoryBackend):
    """A store that takes longer to write than the API's answer deadline (a large file to a
    distant bucket)."""

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        await asyncio.sleep(0.5)
        await super().put(bucket, key, data, content_type)


async def test_a_slow_store_is_waited_for_past_the_answer_deadline(
    api_settings: ApiSettings,
    core_settings: CoreSettings,
    redis_client: Redis,
    api_keys: ApiKeys,
    tmp_path: Path,
) -> None:
    # The answer deadline (the frozen-Redis guard) is 0.1 s here; the store's own limits
    # (EMP_STORAGE_TIMEOUT_S, retries) bound an upload instead.
    settings = api_settings.model_copy(update={"answer_timeout_s": 0.1})
    app = create_app(settings, core_settings, redis_client)
    slow = SlowBackend(tmp_path / "slow", "http://api.test/assets")
    state = app.state.emp
    app.state.emp = dataclasses.replace(state, storage=AssetStorage({"local": slow}, "local", "a1"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        answer = await upload(client, api_keys.acme)

    assert answer.status_code == 201, answer.text
    assert await slow.get("a1", answer.json()["key"]) == PNG


async def test_an_upload_cut_short_stores_nothing(
    live_url: str, api_keys: ApiKeys, storage_settings: StorageSettings
) -> None:
    host, port = live_url.removeprefix("http://").split(":")
    head = (
        f"POST /api/uploads HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_keys.acme}\r\n"
        f"Content-Type: image/png\r\nContent-Length: {len(PNG)}\r\n\r\n"
    )
    with structlog.testing.capture_logs() as logs:
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(head.encode() + PNG[:100])  # then the client goes away
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(10):
            while not any(e["event"] == "upload_abandoned" for e in logs):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

    assert [entry["event"] for entry in logs].count("upload_abandoned") == 1
    assert stored_files(storage_settings) == []
