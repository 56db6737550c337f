"""Signed download URLs of GCS and Azure, checked offline (#14 item 7).

No emulator of either runs here, and none is needed: obstore signs locally with the configured
credentials, and both signatures can be recomputed from the URL alone — GCS's V4 signature is
verified with the service account's public key, Azure's SAS by recomputing the HMAC with the
account key. A URL whose signature checks out against the real algorithms is one the real
service accepts until it expires (the S3 route is exercised end to end against moto in
``tests/integration/api/test_object_store_downloads.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from emp_queue.storage import StorageSettings, build_asset_storage
from emp_queue.storage.object_store import ObjectStoreBackend

EMAIL = "emp-signer@example-project.iam.gserviceaccount.com"
ACCOUNT = "empacct"
ACCOUNT_KEY = base64.b64encode(b"a fixed azure account key, 32 by").decode()
KEY = "renders/job-1/out image.png"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def gcs(tmp_path: Path, private_key: rsa.RSAPrivateKey) -> ObjectStoreBackend:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "example-project",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": EMAIL,
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    backend = build_asset_storage(StorageSettings(gcs_service_account_path=key_file)).backends[
        "gcs"
    ]
    assert isinstance(backend, ObjectStoreBackend)
    return backend


@pytest.fixture
def azure() -> ObjectStoreBackend:
    settings = StorageSettings(azure_account=ACCOUNT, azure_access_key=ACCOUNT_KEY)
    backend = build_asset_storage(settings).backends["azure"]
    assert isinstance(backend, ObjectStoreBackend)
    return backend


def raw_query(url: str) -> dict[str, str]:
    """The query parameters as they appear in the URL (still percent-encoded)."""
    pairs = (item.partition("=") for item in urlsplit(url).query.split("&"))
    return {name: value for name, _, value in pairs}


async def test_a_gcs_url_carries_a_v4_signature_of_the_service_account(
    gcs: ObjectStoreBackend, private_key: rsa.RSAPrivateKey
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    url = await gcs.signed_url("outputs", KEY, 300)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "storage.googleapis.com")
    assert unquote(parts.path) == f"/outputs/{KEY}"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "300"
    assert query["X-Goog-SignedHeaders"] == "host"
    signed_at = datetime.strptime(query["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=5) <= signed_at <= datetime.now(UTC) + timedelta(seconds=5)
    scope = f"{signed_at:%Y%m%d}/auto/storage/goog4_request"
    assert query["X-Goog-Credential"] == f"{EMAIL}/{scope}"

    # Google's V4 signing: the canonical request, its hash in the string to sign, RSA-SHA256.
    encoded = raw_query(url)
    signature = bytes.fromhex(encoded.pop("X-Goog-Signature"))
    canonical_query = "&".join(f"{name}={encoded[name]}" for name in sorted(encoded))
    headers = ["host:storage.googleapis.com", "", "host"]
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, *headers, "UNSIGNED-PAYLOAD"]
    )
    public_key = private_key.public_key()

    def verify(request: str) -> None:
        digest = hashlib.sha256(request.encode()).hexdigest()
        string_to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope, digest])
        public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())

    verify(canonical_request)
    with pytest.raises(InvalidSignature):  # the check can fail: another object's path does
        verify(canonical_request.replace("/outputs/", "/others/"))


async def test_an_azure_url_carries_a_read_only_sas_signed_with_the_account_key(
    azure: ObjectStoreBackend,
) -> None:
    url = await azure.signed_url("outputs", KEY, 300)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", f"{ACCOUNT}.blob.core.windows.net")
    assert unquote(parts.path) == f"/outputs/{KEY}"
    sas = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert sas["sp"] == "r"  # read, nothing else
    assert sas["sr"] == "b"  # this one blob, not the container
    start = datetime.strptime(sas["st"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    expiry = datetime.strptime(sas["se"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert expiry - start == timedelta(seconds=300)

    # A service SAS (version 2020-12-06 and later): HMAC-SHA256 over the fields, in order;
    # the resource is the blob's path as the URL spells it.
    resource = f"/blob/{ACCOUNT}{parts.path}"
    fields = [sas["sp"], sas["st"], sas["se"], resource, "", "", "", sas["sv"], sas["sr"]]
    string_to_sign = "\n".join([*fields, *[""] * 7])  # snapshot, encryption scope, rsc*
    mac = hmac.new(base64.b64decode(ACCOUNT_KEY), string_to_sign.encode(), hashlib.sha256)
    assert sas["sig"] == base64.b64encode(mac.digest()).decode()
    wrong_key = hmac.new(b"another account key", string_to_sign.encode(), hashlib.sha256)
    assert sas["sig"] != base64.b64encode(wrong_key.digest()).decode()


async def test_each_bucket_signs_for_its_own_path(azure: ObjectStoreBackend) -> None:
    first = urlsplit(await azure.signed_url("outputs", KEY, 60))
    second = urlsplit(await azure.signed_url("inputs", KEY, 60))
    assert unquote(first.path).startswith("/outputs/")
    assert unquote(second.path).startswith("/inputs/")
    assert parse_qs(first.query)["sig"] != parse_qs(second.query)["sig"]
