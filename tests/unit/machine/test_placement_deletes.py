"""The pure parts of the Ollama and A1111 deletes: which bytes a delete frees, which checkpoint
files may be removed, and the A1111 models folder setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from emp_queue.machine.model_files import UnsafeModelPathError
from emp_queue.machine.placement_deletes import (
    A1111FilesSettings,
    delete_checkpoint,
    ollama_freed_bytes,
)


def test_an_ollama_model_frees_its_size_unless_another_name_shares_its_digest() -> None:
    tags = [
        {"name": "llama3:latest", "size": 100, "digest": "d1"},
        {"name": "mine:latest", "size": 100, "digest": "d1"},
        {"name": "qwen:0.5b", "size": 40, "digest": "d2"},
    ]
    assert ollama_freed_bytes(tags, "qwen:0.5b") == (40, [])
    assert ollama_freed_bytes(tags, "llama3:latest") == (0, ["mine:latest"])


def test_a_checkpoint_file_is_removed_and_its_bytes_counted(tmp_path: Path) -> None:
    (tmp_path / "SDXL").mkdir()
    (tmp_path / "SDXL" / "b.safetensors").write_bytes(b"b" * 500)
    assert delete_checkpoint(tmp_path, "SDXL/b.safetensors") == 500
    assert not (tmp_path / "SDXL" / "b.safetensors").exists()
    assert delete_checkpoint(tmp_path, "SDXL/b.safetensors") is None


def test_a_hard_linked_or_symlinked_checkpoint_frees_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"a" * 100)
    os.link(tmp_path / "a.safetensors", tmp_path / "a-copy.safetensors")
    (tmp_path / "alias.safetensors").symlink_to(tmp_path / "a.safetensors")
    assert delete_checkpoint(tmp_path, "alias.safetensors") == 0
    assert delete_checkpoint(tmp_path, "a-copy.safetensors") == 0
    assert (tmp_path / "a.safetensors").read_bytes() == b"a" * 100


@pytest.mark.parametrize("name", ["../x.safetensors", "/etc/passwd", "a\\b", ""])
def test_a_name_that_is_not_a_path_inside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeModelPathError):
        delete_checkpoint(tmp_path / "models", name)


def test_links_leading_out_of_the_folder_and_folders_are_refused(tmp_path: Path) -> None:
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    (outside / "keep.safetensors").write_bytes(b"k")
    (models / "out.safetensors").symlink_to(outside / "keep.safetensors")
    (models / "linked").symlink_to(outside)
    (models / "folder.safetensors").mkdir()
    with pytest.raises(UnsafeModelPathError, match="outside the model folders"):
        delete_checkpoint(models, "out.safetensors")
    with pytest.raises(UnsafeModelPathError, match="once links are followed"):
        delete_checkpoint(models, "linked/keep.safetensors")
    with pytest.raises(UnsafeModelPathError, match="not a regular file"):
        delete_checkpoint(models, "folder.safetensors")
    assert (outside / "keep.safetensors").exists()


def test_the_a1111_models_folder_must_be_an_existing_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMP_A1111_MODELS_DIR", raising=False)
    assert A1111FilesSettings().models_dir is None
    monkeypatch.setenv("EMP_A1111_MODELS_DIR", str(tmp_path))
    assert A1111FilesSettings().models_dir == tmp_path
    monkeypatch.setenv("EMP_A1111_MODELS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="does not exist: EMP_A1111_MODELS_DIR must be"):
        A1111FilesSettings()
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("EMP_A1111_MODELS_DIR", str(tmp_path / "file"))
    with pytest.raises(ValidationError, match="is not a directory"):
        A1111FilesSettings()
