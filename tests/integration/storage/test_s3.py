"""The S3 backend against a real S3-compatible server (moto) on loopback, through obstore."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import httpx
import obstore
import pytest

from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import (
    AssetStorage,
    ObjectStoreBackend,
    StorageSettings,
    build_asset_storage,
)
from emp_queue.testing.connector_contract import closed_port
from tests.integration.storage.conftest import REGION, TEST_LIMITS, S3Server

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def s3_storage(backend: ObjectStoreBackend, bucket: str) -> AssetStorage:
    return AssetStorage({"s3": backend}, "s3", bucket)


async def test_an_upload_reads_back_with_its_bytes_and_content_type(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    backend = s3_server.backend()
    job_id = str(uuid.uuid4())

    asset = await s3_storage(backend, bucket).store(
        job_id, {"storage": {"prefix": "renders"}}, PNG, content_type="image/png"
    )

    assert asset.key.startswith(f"renders/{job_id}/")
    assert asset.key.endswith(".png")
    stored = await obstore.get_async(backend.store(bucket), asset.key)
    assert bytes(await stored.bytes_async()) == PNG
    assert stored.attributes["Content-Type"] == "image/png"
    assert stored.meta["size"] == len(PNG) == asset.size


async def test_the_url_is_the_objects_path_style_address(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    backend = s3_server.backend()
    ctx = {"storage": {"prefix": "a/b", "filename": "clip.mp4"}}

    asset = await s3_storage(backend, bucket).store("job-1", ctx, b"v", content_type="video/mp4")

    assert asset.url == f"{s3_server.endpoint}/{bucket}/a/b/job-1/clip.mp4"
    # The bucket is private, so read it through a presigned URL of the same address.
    signed = await obstore.sign_async(backend.store(bucket), "GET", asset.key, timedelta(minutes=1))
    assert signed.split("?")[0] == asset.url
    async with httpx.AsyncClient() as http:
        response = await http.get(signed)
    assert response.status_code == 200
    assert response.content == b"v"
    assert response.headers["content-type"] == "video/mp4"


async def test_a_retried_attempt_overwrites_its_output(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    backend = s3_server.backend()
    storage = s3_storage(backend, bucket)
    ctx = {"storage": {"filename": "out.txt"}}

    first = await storage.store("job-2", ctx, b"attempt 1", content_type="text/plain")
    second = await storage.store("job-2", ctx, b"attempt 2", content_type="text/plain")

    assert first.key == second.key
    stored = await obstore.get_async(backend.store(bucket), second.key)
    assert bytes(await stored.bytes_async()) == b"attempt 2"


async def test_a_job_may_name_another_bucket_and_each_bucket_keeps_one_store(
    s3_server: S3Server,
) -> None:
    default, other = s3_server.create_bucket(), s3_server.create_bucket()
    backend = s3_server.backend()
    storage = s3_storage(backend, default)

    asset = await storage.store(
        "job-3", {"storage": {"bucket": other}}, b"x", content_type="application/json"
    )
    await storage.store("job-4", {}, b"y", content_type="application/json")

    assert asset.bucket == other
    assert backend.store(other) is backend.store(other)
    assert backend.store(other) is not backend.store(default)
    listed = await obstore.list(backend.store(other)).collect_async()
    assert [item["path"] for item in listed] == [asset.key]


async def test_a_missing_bucket_is_a_service_fault_naming_it(s3_server: S3Server) -> None:
    storage = s3_storage(s3_server.backend(), "no-such-bucket")

    with pytest.raises(JobFailedError) as failure:
        await storage.store("job-5", {}, b"x", content_type="text/plain")

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    message = str(failure.value)
    assert "'no-such-bucket' does not exist" in message
    assert "NoSuchBucket" in message
    assert "\n" not in message, "a job's error stays one line, without obstore's debug dump"
    assert failure.value.details["bucket"] == "no-such-bucket"


async def test_refused_credentials_are_a_service_fault(
    s3_server_checking_credentials: S3Server,
) -> None:
    storage = s3_storage(s3_server_checking_credentials.backend("unknown-key"), "assets")

    with pytest.raises(JobFailedError) as failure:
        await storage.store("job-6", {}, b"x", content_type="text/plain")

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    assert "refused this worker's credentials" in str(failure.value)
    assert "InvalidAccessKeyId" in str(failure.value)


async def test_an_unreachable_endpoint_is_a_service_fault_within_the_retry_limit() -> None:
    backend = ObjectStoreBackend.s3(
        endpoint=f"http://127.0.0.1:{closed_port()}",
        region=REGION,
        access_key_id="k",
        secret_access_key="s",
        allow_http=True,
        limits=TEST_LIMITS,
    )
    started = time.monotonic()

    with pytest.raises(JobFailedError) as failure:
        await s3_storage(backend, "assets").store("job-7", {}, b"x", content_type="text/plain")

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    assert "could not be reached" in str(failure.value)
    assert time.monotonic() - started < TEST_LIMITS.retry_timeout_s + 5


async def test_settings_configure_s3_as_the_default_provider(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    settings = StorageSettings(
        provider="s3",
        bucket=bucket,
        s3_endpoint=s3_server.endpoint,
        s3_region=REGION,
        s3_access_key_id="test-key",
        s3_secret_access_key="test-secret",
        s3_allow_http=True,
        s3_public_url="https://cdn.example.com/{bucket}/{key}",
    )
    storage = build_asset_storage(settings)

    asset = await storage.store("job-8", {}, b"{}", content_type="application/json")

    assert sorted(storage.backends) == ["local", "s3"]
    assert (asset.provider, asset.bucket) == ("s3", bucket)
    assert asset.url == f"https://cdn.example.com/{bucket}/{asset.key}"
    s3 = storage.backends["s3"]
    assert isinstance(s3, ObjectStoreBackend)
    stored = await obstore.get_async(s3.store(bucket), asset.key)
    assert bytes(await stored.bytes_async()) == b"{}"


async def test_a_deleted_output_is_gone_and_a_second_delete_says_so(s3_server: S3Server) -> None:
    bucket = s3_server.create_bucket()
    backend = s3_server.backend()
    asset = await s3_storage(backend, bucket).store(
        str(uuid.uuid4()), {}, PNG, content_type="image/png"
    )

    first = await backend.delete(bucket, asset.key)
    second = await backend.delete(bucket, asset.key)

    assert (first, second) == (True, False)
    with pytest.raises(FileNotFoundError):
        await obstore.head_async(backend.store(bucket), asset.key)


async def test_uploads_are_read_back_and_erased_per_customer(s3_server: S3Server) -> None:
    storage = s3_storage(s3_server.backend(), s3_server.create_bucket())
    refs = {}
    for customer in ("acme", "acme", "acme2"):
        ref, _ = await storage.store_upload(customer, PNG, content_type="image/png", name="in.png")
        refs.setdefault(customer, []).append(str(ref))

    assert await storage.read_upload(refs["acme"][0], "acme") == PNG
    assert await storage.delete_uploads("acme") == 2
    assert await storage.delete_uploads("acme") == 0
    with pytest.raises(JobFailedError, match="no upload"):
        await storage.read_upload(refs["acme"][1], "acme")
    assert await storage.read_upload(refs["acme2"][0], "acme2") == PNG  # not a prefix match
