"""The local-directory store: key layout, names, URLs, bad ctx.storage, atomic writes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage, LocalDirectoryBackend

PUBLIC_URL = "http://127.0.0.1:3331/assets"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "assets-root"


@pytest.fixture
def storage(root: Path) -> AssetStorage:
    return AssetStorage({"local": LocalDirectoryBackend(root, PUBLIC_URL)}, "local", "assets")


async def test_an_unnamed_output_is_keyed_by_job_and_content_hash(
    storage: AssetStorage, root: Path
) -> None:
    data = b"\x89PNG fake image"
    digest = hashlib.sha256(data).hexdigest()

    asset = await storage.store("job-1", {}, data, content_type="image/png")

    assert asset.key == f"job-1/{digest[:32]}.png"
    assert (asset.provider, asset.bucket, asset.size) == ("local", "assets", len(data))
    assert (asset.sha256, asset.content_type) == (digest, "image/png")
    assert asset.url == f"{PUBLIC_URL}/assets/job-1/{digest[:32]}.png"
    assert (root / "assets" / asset.key).read_bytes() == data
    assert asset.as_result()["url"] == asset.url


async def test_prefix_and_bucket_from_ctx_storage(storage: AssetStorage, root: Path) -> None:
    ctx = {"storage": {"bucket": "customer-a", "prefix": "/renders/2024/"}}

    asset = await storage.store("job-2", ctx, b"{}", content_type="application/json")

    assert asset.bucket == "customer-a"
    assert asset.key.startswith("renders/2024/job-2/")
    assert asset.key.endswith(".json")
    assert (root / "customer-a" / asset.key).read_bytes() == b"{}"


async def test_unknown_content_type_gets_bin(storage: AssetStorage) -> None:
    asset = await storage.store("job-3", {}, b"x", content_type="application/x-emp-unknown")

    assert asset.key.endswith(".bin")


@pytest.mark.parametrize(
    ("wanted", "names"),
    [
        ("out.png", ["out.png", "out-1.png", "out-2.png"]),
        ("result", ["result", "result-1", "result-2"]),
        ("archive.tar.gz", ["archive.tar.gz", "archive.tar-1.gz", "archive.tar-2.gz"]),
    ],
)
async def test_a_job_filename_is_numbered_after_the_first_output(
    storage: AssetStorage, wanted: str, names: list[str]
) -> None:
    ctx = {"storage": {"filename": wanted}}

    keys = [
        (await storage.store("job-4", ctx, bytes([i]), content_type="image/png", index=i)).key
        for i in range(3)
    ]

    assert keys == [f"job-4/{name}" for name in names]


async def test_a_connector_suggested_name_is_used_only_when_safe(storage: AssetStorage) -> None:
    kept = await storage.store("job-5", {}, b"a", content_type="image/png", filename="Img_01.png")
    refused = await storage.store(
        "job-5", {}, b"b", content_type="image/png", filename="../../etc/passwd"
    )

    assert kept.key == "job-5/Img_01.png"
    assert refused.key == f"job-5/{hashlib.sha256(b'b').hexdigest()[:32]}.png"


async def test_the_job_filename_wins_over_the_connectors(storage: AssetStorage) -> None:
    ctx = {"storage": {"filename": "mine.webp"}}

    asset = await storage.store("job-6", ctx, b"a", content_type="image/webp", filename="x.webp")

    assert asset.key == "job-6/mine.webp"


async def test_cdn_url_replaces_the_backend_url(storage: AssetStorage) -> None:
    ctx = {"storage": {"cdn_url": "https://cdn.example.com/media/", "prefix": "p"}}

    asset = await storage.store("job-7", ctx, b"a", content_type="image/png", filename="a.png")

    assert asset.url == "https://cdn.example.com/media/p/job-7/a.png"


async def test_a_retry_overwrites_the_same_key(storage: AssetStorage, root: Path) -> None:
    ctx = {"storage": {"filename": "out.txt"}}

    await storage.store("job-8", ctx, b"attempt 1", content_type="text/plain")
    asset = await storage.store("job-8", ctx, b"attempt 2", content_type="text/plain")

    assert (root / "assets" / asset.key).read_bytes() == b"attempt 2"
    assert [p.name for p in (root / "assets" / "job-8").iterdir()] == ["out.txt"]


@pytest.mark.parametrize(
    ("storage_ctx", "problem"),
    [
        ({"bucket": "Upper_Case"}, "bucket"),
        ({"bucket": "../escape"}, "bucket"),
        ({"prefix": "a/../../b c"}, "prefix"),
        ({"filename": "../x.png"}, "filename"),
        ({"filename": ".hidden"}, "filename"),
        ({"cdn_url": "ftp://cdn.example.com"}, "cdn_url"),
        ({"region": "eu"}, "region"),
        ({"provider": "s3"}, "'s3' is not configured on this worker; configured: local"),
        ("not an object", "storage"),
    ],
)
async def test_an_invalid_ctx_storage_is_a_job_fault(
    storage: AssetStorage, root: Path, storage_ctx: Any, problem: str
) -> None:
    with pytest.raises(JobFailedError) as failure:
        await storage.store("job-9", {"storage": storage_ctx}, b"x", content_type="text/plain")

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert problem in str(failure.value)
    assert not await asyncio.to_thread(root.exists), "nothing is written for a refused job"


async def test_a_reader_never_sees_half_an_asset(storage: AssetStorage, root: Path) -> None:
    size = 4 * 1024 * 1024
    versions = [bytes([ord("a")]) * size, bytes([ord("b")]) * size]
    ctx = {"storage": {"filename": "big.bin"}}
    first = await storage.store("job-10", ctx, versions[0], content_type="application/x-big")
    path = root / "assets" / first.key
    seen: list[bytes] = []
    stop = threading.Event()

    def read_while_written() -> None:
        while not stop.is_set() and len(seen) < 2000:
            seen.append(path.read_bytes())

    reader = asyncio.create_task(asyncio.to_thread(read_while_written))
    for round_ in range(20):
        await storage.store("job-10", ctx, versions[round_ % 2], content_type="application/x-big")
    stop.set()
    await reader

    assert seen
    assert all(content in versions for content in seen), "a read saw a partly written file"
    assert [p.name for p in path.parent.iterdir()] == ["big.bin"], "no temporary files left"


async def test_an_unwritable_root_is_reported_with_its_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    storage = AssetStorage({"local": LocalDirectoryBackend(blocker, PUBLIC_URL)}, "local", "b1")

    with pytest.raises(ConfigurationError, match="cannot write asset") as failure:
        await storage.store("job-11", {}, b"x", content_type="text/plain")

    assert str(blocker) in str(failure.value)
