"""Deleting an evicted model's files: only inside the models folder, bytes freed counted as
the file system frees them (a hard link frees nothing until the last one goes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emp_queue.machine.components import ComponentSettings, Manifest
from emp_queue.machine.model_files import (
    UnsafeModelPathError,
    checked_name,
    delete_model_files,
)

SHA = "ab" * 32


@pytest.fixture
def settings(tmp_path: Path) -> ComponentSettings:
    return ComponentSettings(
        models_dir=tmp_path / "models", cache_dir=tmp_path / "cache", nodes_dir=tmp_path / "nodes"
    )


def put(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w" * size)
    return path


def manifest(dest: str, sha: str = SHA) -> Manifest:
    entry = {"name": "m", "url": "http://x.invalid/m", "sha256": sha, "dest": dest}
    return Manifest.model_validate({"models": [entry]})


@pytest.mark.parametrize(
    "name", ["", "../escape.safetensors", "/etc/passwd", "a/../b.safetensors", "a\\b", "a//b", "."]
)
def test_a_name_that_could_leave_the_folder_is_refused(name: str) -> None:
    with pytest.raises(UnsafeModelPathError):
        checked_name(name)


def test_a_plain_file_in_any_model_folder_is_deleted_and_its_bytes_counted(
    settings: ComponentSettings,
) -> None:
    ckpt = put(settings.models_dir / "checkpoints" / "old.safetensors", 1000)
    lora = put(settings.models_dir / "loras" / "old.safetensors", 300)
    keep = put(settings.models_dir / "checkpoints" / "keep.safetensors", 10)
    report = delete_model_files(settings, Manifest(), "old.safetensors", settings.models_dir)
    assert sorted(report.removed) == sorted([ckpt, lora])
    assert report.freed_bytes == 1300
    assert not ckpt.exists()
    assert not lora.exists()
    assert keep.exists()


def test_a_manifest_model_goes_with_its_cache_copy_and_frees_its_size_once(
    settings: ComponentSettings,
) -> None:
    blob = put(settings.cache_dir / "sha256" / SHA, 5000)
    dest = settings.models_dir / "checkpoints" / "m.safetensors"
    dest.parent.mkdir(parents=True)
    os.link(blob, dest)  # what the downloader does on one disk
    report = delete_model_files(
        settings, manifest("checkpoints/m.safetensors"), "m.safetensors", settings.models_dir
    )
    assert report.removed == [dest]
    assert report.freed_bytes == 5000
    assert not blob.exists()


def test_a_symlink_into_the_cache_is_removed_with_its_target(settings: ComponentSettings) -> None:
    blob = put(settings.cache_dir / "sha256" / SHA, 700)
    dest = settings.models_dir / "checkpoints" / "m.safetensors"
    dest.parent.mkdir(parents=True)
    dest.symlink_to(blob)  # what the downloader does across disks
    report = delete_model_files(settings, Manifest(), "m.safetensors", settings.models_dir)
    assert report.freed_bytes == 700
    assert not dest.is_symlink()
    assert not blob.exists()


def test_a_symlink_leading_out_of_the_folders_is_refused_and_nothing_is_touched(
    settings: ComponentSettings, tmp_path: Path
) -> None:
    precious = put(tmp_path / "elsewhere" / "precious.safetensors", 100)
    link = settings.models_dir / "checkpoints" / "m.safetensors"
    link.parent.mkdir(parents=True)
    link.symlink_to(precious)
    with pytest.raises(UnsafeModelPathError, match="outside the model folders"):
        delete_model_files(settings, Manifest(), "m.safetensors", settings.models_dir)
    assert link.is_symlink()
    assert precious.read_bytes() == b"w" * 100


def test_a_symlinked_folder_leading_out_is_never_entered(
    settings: ComponentSettings, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    precious = put(outside / "m.safetensors", 100)
    settings.models_dir.mkdir(parents=True)
    (settings.models_dir / "checkpoints").symlink_to(outside, target_is_directory=True)
    # Found by folder scan: a symlinked folder is not scanned.
    report = delete_model_files(settings, Manifest(), "m.safetensors", settings.models_dir)
    assert report.removed == []
    assert precious.exists()
    # Named by the manifest: the path resolves outside, refused.
    with pytest.raises(UnsafeModelPathError, match="outside"):
        delete_model_files(
            settings, manifest("checkpoints/m.safetensors"), "m.safetensors", settings.models_dir
        )
    assert precious.exists()


def test_a_file_with_another_hard_link_frees_nothing(
    settings: ComponentSettings, tmp_path: Path
) -> None:
    elsewhere = put(tmp_path / "backup" / "m.safetensors", 400)
    dest = settings.models_dir / "checkpoints" / "m.safetensors"
    dest.parent.mkdir(parents=True)
    os.link(elsewhere, dest)
    report = delete_model_files(settings, Manifest(), "m.safetensors", settings.models_dir)
    assert report.removed == [dest]
    assert report.freed_bytes == 0  # the other link still holds the bytes
    assert elsewhere.exists()


def test_a_cache_copy_another_placed_model_shares_is_kept(settings: ComponentSettings) -> None:
    blob = put(settings.cache_dir / "sha256" / SHA, 900)
    first = settings.models_dir / "checkpoints" / "m.safetensors"
    second = settings.models_dir / "checkpoints" / "same.safetensors"
    first.parent.mkdir(parents=True)
    first.symlink_to(blob)
    second.symlink_to(blob)
    entries = [
        {"name": name, "url": "http://x.invalid/m", "sha256": SHA, "dest": f"checkpoints/{dest}"}
        for name, dest in (("m", "m.safetensors"), ("s", "same.safetensors"))
    ]
    both = Manifest.model_validate({"models": entries})
    report = delete_model_files(settings, both, "m.safetensors", settings.models_dir)
    assert report.removed == [first]
    assert report.freed_bytes == 0
    assert blob.exists()
    assert second.exists()
