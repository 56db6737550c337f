"""``StorageSettings`` from the environment, and the storage ``build_asset_storage`` makes."""

from __future__ import annotations

import json
from pathlib import Path

import platformdirs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from emp_queue.errors import ConfigurationError
from emp_queue.storage import (
    LocalDirectoryBackend,
    ObjectStoreBackend,
    StorageSettings,
    build_asset_storage,
)

CLOUD_VARIABLES = (
    "EMP_STORAGE_PROVIDER",
    "EMP_STORAGE_S3_ENDPOINT",
    "EMP_STORAGE_S3_REGION",
    "EMP_STORAGE_S3_ACCESS_KEY_ID",
    "EMP_STORAGE_S3_SECRET_ACCESS_KEY",
    "EMP_STORAGE_GCS_SERVICE_ACCOUNT_PATH",
    "EMP_STORAGE_AZURE_ACCOUNT",
    "EMP_STORAGE_AZURE_ACCESS_KEY",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_is_the_local_directory_served_by_the_api() -> None:
    storage = build_asset_storage(StorageSettings())

    local = storage.backends["local"]
    assert isinstance(local, LocalDirectoryBackend)
    assert list(storage.backends) == ["local"]
    assert (storage.default_provider, storage.default_bucket) == ("local", "assets")
    assert local.root == platformdirs.user_data_path("emp-job-queue") / "assets"
    assert local.url("assets", "j/a.png") == "http://127.0.0.1:3331/assets/assets/j/a.png"


def test_settings_come_from_emp_storage_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMP_STORAGE_PROVIDER", "s3")
    monkeypatch.setenv("EMP_STORAGE_BUCKET", "outputs")
    monkeypatch.setenv("EMP_STORAGE_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("EMP_STORAGE_S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com/")
    monkeypatch.setenv("EMP_STORAGE_S3_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("EMP_STORAGE_S3_SECRET_ACCESS_KEY", "very-secret")

    settings = StorageSettings()
    storage = build_asset_storage(settings)

    assert "very-secret" not in repr(settings)
    assert sorted(storage.backends) == ["local", "s3"]
    assert storage.default_provider == "s3"
    assert storage.backends["s3"].url("outputs", "j/a b.png") == (
        "https://acct.r2.cloudflarestorage.com/outputs/j/a%20b.png"
    )


def test_aws_urls_are_virtual_hosted_in_the_region() -> None:
    storage = build_asset_storage(StorageSettings(s3_region="eu-west-3"))

    assert storage.backends["s3"].url("media", "j/x.png") == (
        "https://media.s3.eu-west-3.amazonaws.com/j/x.png"
    )


def test_gcs_and_azure_are_added_when_configured(tmp_path: Path) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account()))

    storage = build_asset_storage(
        StorageSettings(
            gcs_service_account_path=key_file,
            azure_account="empacct",
            azure_access_key="a2V5",
            azure_public_url="https://cdn.example.com/{bucket}/{key}",
        )
    )

    assert sorted(storage.backends) == ["azure", "gcs", "local"]
    assert storage.backends["gcs"].url("b1", "k.png") == "https://storage.googleapis.com/b1/k.png"
    assert storage.backends["azure"].url("c1", "k.png") == "https://cdn.example.com/c1/k.png"
    assert all(isinstance(storage.backends[name], ObjectStoreBackend) for name in ("gcs", "azure"))


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("s3", "EMP_STORAGE_S3_ENDPOINT"),
        ("gcs", "EMP_STORAGE_GCS_SERVICE_ACCOUNT_PATH"),
        ("azure", "EMP_STORAGE_AZURE_ACCOUNT"),
    ],
)
def test_a_default_provider_that_is_not_configured_names_the_variable(
    provider: str, variable: str
) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        build_asset_storage(StorageSettings(provider=provider))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"s3_region": "us-east-1", "s3_access_key_id": "k"}, "EMP_STORAGE_S3_SECRET_ACCESS_KEY"),
        ({"s3_secret_access_key": "s"}, "EMP_STORAGE_S3_ENDPOINT"),
        ({"s3_endpoint": "http://127.0.0.1:9000"}, "EMP_STORAGE_S3_ALLOW_HTTP=true"),
        ({"azure_access_key": "a2V5"}, "EMP_STORAGE_AZURE_ACCOUNT"),
        ({"gcs_service_account_path": "/nonexistent/sa.json"}, "is not a file"),
        ({"s3_region": "us-east-1", "s3_public_url": "https://cdn/{object}"}, "{key}"),
    ],
)
def test_incomplete_cloud_settings_are_refused(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as failure:
        build_asset_storage(StorageSettings.model_validate(settings))

    assert message in str(failure.value)


def test_a_malformed_key_file_stops_the_process_at_start(tmp_path: Path) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text("{}")

    with pytest.raises(ConfigurationError, match="cannot set up gcs storage"):
        build_asset_storage(StorageSettings(gcs_service_account_path=key_file))


def service_account() -> dict[str, str]:
    """A syntactically valid service-account key (its private key is never used to sign)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "emp-test",
        "private_key_id": "0",
        "private_key": pem,
        "client_email": "emp@emp-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:1/token",
    }
