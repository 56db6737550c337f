"""``GET /assets/{bucket}/{key}``: local assets served to API keys, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from emp_queue import JobQueue, JobSpec
from emp_queue.api.settings import ApiSettings
from emp_queue.storage import AssetStorage, StorageSettings, StoredAsset, build_asset_storage
from tests.integration.api.conftest import ApiKeys, bearer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SECRET = b"not an asset"


@pytest.fixture
def api_settings(storage_settings: StorageSettings) -> ApiSettings:
    return ApiSettings(
        rate_limit_per_s=None, sweep_interval_s=None, key_cache_s=0, storage=storage_settings
    )


@pytest.fixture
def storage(storage_settings: StorageSettings) -> AssetStorage:
    return build_asset_storage(storage_settings)


@pytest.fixture
async def image(storage: AssetStorage, job_queue: JobQueue) -> StoredAsset:
    """An output of acme's job ``job-1``."""
    await job_queue.submit(JobSpec(id="job-1", service_required="sim", customer_id="acme"))
    return await storage.store("job-1", {"storage": {"prefix": "p"}}, PNG, content_type="image/png")


async def test_a_client_reads_only_its_own_customers_outputs(
    client: httpx.AsyncClient, api_keys: ApiKeys, image: StoredAsset
) -> None:
    own = await client.get(image.url, headers=bearer(api_keys.acme))
    other = await client.get(image.url, headers=bearer(api_keys.globex))

    assert own.status_code == 200
    assert other.status_code == 404
    assert other.json()["error"] == "not_found"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return secret


@pytest.mark.parametrize("role", ["admin", "worker", "client"])
async def test_any_key_downloads_a_stored_asset(
    client: httpx.AsyncClient, api_keys: ApiKeys, image: StoredAsset, role: str
) -> None:
    response = await client.get(image.url, headers=bearer(api_keys.by_role()[role]))

    assert response.status_code == 200, response.text
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private, max-age=3600"
    assert response.headers["etag"].startswith('"')
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-length"] == str(len(PNG))


async def test_the_token_query_parameter_is_a_key_too(
    client: httpx.AsyncClient, api_keys: ApiKeys, image: StoredAsset
) -> None:
    accepted = await client.get(image.url, params={"token": api_keys.acme})
    refused = await client.get(image.url, params={"token": "emp_not-a-key"})

    assert accepted.status_code == 200
    assert accepted.content == PNG
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorized"


async def test_no_key_is_401(client: httpx.AsyncClient, image: StoredAsset) -> None:
    response = await client.get(image.url)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "API key" in response.json()["message"]


async def test_an_unchanged_asset_is_304(admin: httpx.AsyncClient, image: StoredAsset) -> None:
    first = await admin.get(image.url)
    etag = first.headers["etag"]

    again = await admin.get(image.url, headers={"If-None-Match": f'W/"other", {etag}'})
    changed = await admin.get(image.url, headers={"If-None-Match": '"stale"'})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert changed.status_code == 200


async def test_a_missing_asset_is_404(admin: httpx.AsyncClient, image: StoredAsset) -> None:
    response = await admin.get(image.url.replace(".png", ".jpg"))

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_a_directory_is_not_an_asset(admin: httpx.AsyncClient, image: StoredAsset) -> None:
    response = await admin.get("/assets/assets/p/job-1")

    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/assets/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/assets/..%2F..%2Fsecret.txt",
        "/assets/%2e%2e/secret.txt",
        "/assets/assets/p/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        f"/assets/assets/{'%2F' * 2}secret.txt",
        "/assets/assets/.%2Fp/job-1",
    ],
)
async def test_no_path_leaves_the_asset_directory(
    admin: httpx.AsyncClient, image: StoredAsset, outside: Path, path: str
) -> None:
    response = await admin.get(path)

    assert response.status_code == 404
    assert SECRET not in response.content


async def test_a_symlink_out_of_the_directory_is_refused(
    admin: httpx.AsyncClient, storage_settings: StorageSettings, outside: Path
) -> None:
    link = storage_settings.local_dir / "assets" / "job-2" / "link.txt"
    link.parent.mkdir(parents=True)
    os.symlink(outside, link)

    response = await admin.get("/assets/assets/job-2/link.txt")

    assert response.status_code == 404
    assert SECRET not in response.content


def test_the_route_is_documented(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/assets/{bucket}/{key}"]["get"]

    assert {"200", "304", "401", "404"} <= set(operation["responses"])
    assert {"ETag", "Cache-Control"} <= set(operation["responses"]["200"]["headers"])
    assert {p["name"] for p in operation["parameters"]} >= {"bucket", "key", "token"}
    assert operation["security"] == [{"ApiKey": []}]
