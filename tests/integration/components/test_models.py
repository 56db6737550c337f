"""Models: download, cache, resume with Range, verification, disk check, parallelism."""

from __future__ import annotations

import io
import json
import os
from typing import Any

from rich.console import Console

from emp_queue.machine.components import (
    ComponentManager,
    ComponentSettings,
    Manifest,
    load_manifest,
)
from tests.integration.components.conftest import ModelServer, ProgressLog, model_entry, sha256

MB = 1024 * 1024


def manifest(*models: dict[str, Any]) -> Manifest:
    return Manifest.model_validate({"models": list(models)})


async def test_download_places_verified_files_from_the_cache(
    settings: ComponentSettings, model_server: ModelServer, progress: ProgressLog
) -> None:
    big, small = os.urandom(MB + 123), b"tiny model"
    wanted = manifest(
        model_entry(model_server, "big", big), model_entry(model_server, "small", small)
    )

    report = await ComponentManager(settings).install_models(progress, manifest=wanted)

    assert sorted(report.installed) == ["big", "small"]
    dest = settings.models_dir / "checkpoints" / "big.safetensors"
    assert dest.read_bytes() == big
    assert dest.stat().st_ino == (settings.cache_dir / "sha256" / sha256(big)).stat().st_ino
    assert progress.last("big")[3] == f"downloaded {len(big)} bytes"
    assert any(call[:3] == ("big", len(big), len(big)) for call in progress.calls)
    assert not list((settings.cache_dir / "sha256").glob("*.part"))


async def test_second_run_and_a_fresh_models_dir_reuse_the_cache(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    data = os.urandom(200_000)
    wanted = manifest(model_entry(model_server, "m", data))
    await ComponentManager(settings).install_models(manifest=wanted)
    assert len(model_server.requests) == 1

    again = await ComponentManager(settings).install_models(manifest=wanted)
    dest = settings.models_dir / "checkpoints" / "m.safetensors"
    dest.unlink()
    relinked = await ComponentManager(settings).install_models(manifest=wanted)

    assert again.already_present == ("m",)
    assert relinked.installed == ("m",)
    assert relinked.outcomes[0].detail == "linked from the cache"
    assert dest.read_bytes() == data
    assert len(model_server.requests) == 1


async def test_resume_after_the_connection_drops(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    data = os.urandom(MB)
    half = MB // 2
    model_server.cut_after["m"] = half
    wanted = manifest(model_entry(model_server, "m", data))
    one_try = settings.model_copy(update={"download_attempts": 1})

    first = await ComponentManager(one_try).install_models(manifest=wanted)

    (failure,) = first.failed
    assert f"stopped at {half} bytes" in failure.detail
    part = settings.cache_dir / "sha256" / f"{sha256(data)}.part"
    assert part.stat().st_size == half

    second = await ComponentManager(one_try).install_models(manifest=wanted)

    assert second.installed == ("m",)
    assert model_server.requests == [("m", None), ("m", f"bytes={half}-")]
    assert (settings.models_dir / "checkpoints" / "m.safetensors").read_bytes() == data
    assert not part.exists()


async def test_retry_within_one_run_resumes(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    data = os.urandom(MB)
    model_server.cut_after["m"] = 3 * 64 * 1024
    wanted = manifest(model_entry(model_server, "m", data))

    report = await ComponentManager(settings).install_models(manifest=wanted)

    assert report.installed == ("m",)
    assert model_server.requests == [("m", None), ("m", f"bytes={3 * 64 * 1024}-")]


async def test_checksum_mismatch_is_rejected_and_the_download_deleted(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    served = b"what the server really has"
    expected = sha256(b"what the manifest promised")
    entry = model_entry(model_server, "m", served) | {"sha256": expected}

    report = await ComponentManager(settings).install_models(manifest=manifest(entry))

    (failure,) = report.failed
    assert f"expected {expected}, got {sha256(served)}" in failure.detail
    assert not (settings.models_dir / "checkpoints" / "m.safetensors").exists()
    assert list((settings.cache_dir / "sha256").iterdir()) == []


async def test_size_mismatch_is_rejected(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    entry = model_entry(model_server, "m", b"0123456789") | {"size": 11}

    report = await ComponentManager(settings).install_models(manifest=manifest(entry))

    (failure,) = report.failed
    assert "serves 10 bytes but the manifest says 11" in failure.detail


async def test_not_enough_disk_refuses_before_any_download(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    # A reserve larger than any disk: every byte needed is more than the space allowed.
    short = settings.model_copy(update={"disk_reserve_gb": 1_000_000})
    wanted = manifest(
        model_entry(model_server, "a", b"a" * 1000), model_entry(model_server, "b", b"b" * 10)
    )

    report = await ComponentManager(short).install_models(manifest=wanted)

    assert [outcome.name for outcome in report.failed] == ["a", "b"]
    assert "2 model(s) to download need" in report.failed[0].detail
    assert "EMP_COMPONENTS_DISK_RESERVE_GB" in report.failed[0].detail
    assert model_server.requests == []


async def test_unknown_size_is_checked_when_the_response_arrives(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    short = settings.model_copy(update={"disk_reserve_gb": 1_000_000})
    entry = model_entry(model_server, "m", b"x" * 5000)
    del entry["size"]

    report = await ComponentManager(short).install_models(manifest=manifest(entry))

    (failure,) = report.failed
    assert "model 'm' need" in failure.detail
    assert model_server.requests == [("m", None)]
    assert not (settings.models_dir / "checkpoints" / "m.safetensors").exists()


async def test_at_most_parallelism_downloads_at_once(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    model_server.chunk_delay_s = 0.02
    entries = [model_entry(model_server, f"m{i}", os.urandom(256 * 1024)) for i in range(8)]

    report = await ComponentManager(settings).install_models(manifest=manifest(*entries))

    assert len(report.installed) == 8
    assert settings.parallelism == 5
    assert model_server.max_active == 5


async def test_a_file_already_at_dest_with_the_right_hash_is_kept(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    data = b"baked into the image"
    dest = settings.models_dir / "checkpoints" / "m.safetensors"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)

    report = await ComponentManager(settings).install_models(
        manifest=manifest(model_entry(model_server, "m", data))
    )

    assert report.already_present == ("m",)
    assert model_server.requests == []
    assert (settings.cache_dir / "sha256" / sha256(data)).read_bytes() == data


async def test_manifest_from_a_url(settings: ComponentSettings, model_server: ModelServer) -> None:
    data = b"model bytes"
    entry = model_entry(model_server, "m", data)
    model_server.files["machine.json"] = json.dumps({"models": [entry]}).encode()
    settings = settings.model_copy(update={"manifest": f"{model_server.url}/manifest/machine.json"})

    loaded = await load_manifest(settings.manifest or "")
    report = await ComponentManager(settings).install()

    assert [model.name for model in loaded.models] == ["m"]
    assert report.installed == ("m",)


async def test_a_terminal_gets_a_progress_bar(
    settings: ComponentSettings, model_server: ModelServer, progress: ProgressLog
) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    wanted = manifest(model_entry(model_server, "shown-model", os.urandom(300_000)))

    report = await ComponentManager(settings, console=console).install_models(
        progress, manifest=wanted
    )

    assert report.installed == ("shown-model",)
    assert "shown-model" in screen.getvalue()
    assert "300.0 kB/300.0 kB" in screen.getvalue()
    assert progress.last("shown-model")[3] == "downloaded 300000 bytes"


async def test_two_entries_with_the_same_file_download_it_once(
    settings: ComponentSettings, model_server: ModelServer
) -> None:
    data = os.urandom(100_000)
    first = model_entry(model_server, "m", data)
    second = first | {"name": "m-again", "dest": "loras/m.safetensors"}

    report = await ComponentManager(settings).install_models(manifest=manifest(first, second))

    assert sorted(report.installed) == ["m", "m-again"]
    assert len(model_server.requests) == 1
    assert (settings.models_dir / "loras" / "m.safetensors").read_bytes() == data
