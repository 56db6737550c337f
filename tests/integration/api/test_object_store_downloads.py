"""``GET /api/assets/{provider}/{bucket}/{key}``: private-bucket outputs, signed for their owner
(a real S3 server: moto's)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from emp_queue import JobQueue, JobSpec
from emp_queue.api.settings import ApiSettings
from emp_queue.storage import AssetStorage, StorageSettings, StoredAsset, build_asset_storage
from tests.integration.api.conftest import ApiKeys, bearer
from tests.integration.storage.conftest import REGION, S3Server, moto_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture
def storage_settings(s3: S3Server) -> StorageSettings:
    return StorageSettings(
        provider="s3",
        bucket=s3.create_bucket(),
        s3_endpoint=s3.endpoint,
        s3_region=REGION,
        s3_access_key_id="test-key",
        s3_secret_access_key="test-secret",
        s3_allow_http=True,
    )


@pytest.fixture
def api_settings(storage_settings: StorageSettings) -> ApiSettings:
    return ApiSettings(
        rate_limit_per_s=None,
        sweep_interval_s=None,
        key_cache_s=0,
        storage=storage_settings,
        asset_url_ttl_s=60,
    )


@pytest.fixture
async def image(storage_settings: StorageSettings, job_queue: JobQueue) -> StoredAsset:
    """An output of acme's job ``job-1``, in the private bucket."""
    storage: AssetStorage = build_asset_storage(storage_settings)
    await job_queue.submit(JobSpec(id="job-1", service_required="sim", customer_id="acme"))
    return await storage.store("job-1", {"storage": {"prefix": "p"}}, PNG, content_type="image/png")


def route(asset: StoredAsset) -> str:
    download: str = asset.as_result()["download"]  # what the job's result names
    return download


async def test_the_owner_gets_a_signed_url_that_downloads_the_private_object(
    client: httpx.AsyncClient, api_keys: ApiKeys, image: StoredAsset
) -> None:
    answer = await client.get(route(image), headers=bearer(api_keys.acme))
    async with httpx.AsyncClient() as anyone:
        signed = await anyone.get(answer.headers["location"])
        unsigned = await anyone.get(image.url)

    assert answer.status_code == 307
    assert answer.headers["cache-control"] == "no-store"
    assert "X-Amz-Signature=" in answer.headers["location"]
    assert "X-Amz-Expires=60" in answer.headers["location"]
    assert signed.status_code == 200
    assert signed.content == PNG
    assert unsigned.status_code == 403  # the stored URL alone reads nothing: private bucket


async def test_another_customer_gets_404_and_an_admin_gets_the_url(
    client: httpx.AsyncClient, api_keys: ApiKeys, image: StoredAsset
) -> None:
    other = await client.get(route(image), headers=bearer(api_keys.globex))
    admin = await client.get(
        route(image), params={"redirect": "false"}, headers=bearer(api_keys.admin)
    )

    assert other.status_code == 404
    assert admin.status_code == 200
    assert admin.json()["expires_in_s"] == 60
    assert "X-Amz-Signature=" in admin.json()["url"]


async def test_no_key_is_401(client: httpx.AsyncClient, image: StoredAsset) -> None:
    assert (await client.get(route(image))).status_code == 401


async def test_a_provider_that_is_not_configured_is_404(
    client: httpx.AsyncClient, api_keys: ApiKeys, image: StoredAsset
) -> None:
    answer = await client.get(
        f"/api/assets/gcs/{image.bucket}/{image.key}", headers=bearer(api_keys.admin)
    )

    assert answer.status_code == 404
    assert "gcs" in answer.json()["message"]


async def test_an_upload_goes_to_the_private_bucket_and_back_to_its_owner_only(
    client: httpx.AsyncClient, api_keys: ApiKeys, storage_settings: StorageSettings
) -> None:
    uploaded = await client.post(
        "/api/uploads",
        content=PNG,
        params={"filename": "in.png"},
        headers=bearer(api_keys.acme) | {"Content-Type": "image/png"},
    )
    body = uploaded.json()
    own = await client.get(body["download"], headers=bearer(api_keys.acme))
    other = await client.get(body["download"], headers=bearer(api_keys.globex))
    async with httpx.AsyncClient() as anyone:
        signed = await anyone.get(own.headers["location"])

    assert uploaded.status_code == 201, uploaded.text
    assert body["ref"] == f"s3://{storage_settings.bucket}/{body['key']}"
    assert (own.status_code, other.status_code) == (307, 404)
    assert signed.content == PNG
    worker_storage = build_asset_storage(storage_settings)  # what a worker reads with
    assert await worker_storage.read_upload(body["ref"], "acme") == PNG
