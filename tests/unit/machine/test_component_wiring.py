"""`emp machine` turns EMP_COMPONENTS_MANIFEST into the custom-nodes and models steps, and
wires placement's executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.cli.machine_commands import component_installers, placement_executor
from emp_queue.errors import ConfigurationError
from emp_queue.machine.components import ComponentKind, ComponentSettings, ComponentStep
from emp_queue.machine.model_files import ModelFiles
from emp_queue.machine.placement import Action, PlacementDecision
from emp_queue.machine.placement_deletes import A1111Files, OllamaDelete
from emp_queue.machine.placement_loop import ManifestDownloads, OllamaPreload
from emp_queue.machine.placement_pull import OllamaPull
from emp_queue.machine.placement_services import A1111Checkpoints, ComfyUIWarmup


def test_without_a_manifest_both_steps_are_skipped() -> None:
    installers = component_installers(ComponentSettings(manifest=None))
    assert installers.custom_nodes is None
    assert installers.models is None


def test_a_manifest_gives_one_step_per_kind(tmp_path: Path) -> None:
    manifest = tmp_path / "components.json"
    installers = component_installers(ComponentSettings(manifest=str(manifest)))
    assert isinstance(installers.custom_nodes, ComponentStep)
    assert isinstance(installers.models, ComponentStep)
    assert installers.custom_nodes.kind is ComponentKind.CUSTOM_NODE
    assert installers.models.kind is ComponentKind.MODEL


def test_placement_routes_each_service_and_action_to_its_executor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMP_COMFYUI_URL", "http://comfy.invalid:8188")
    monkeypatch.setenv("EMP_A1111_URL", "http://a1111.invalid:7860")
    monkeypatch.setenv("EMP_A1111_MODELS_DIR", str(tmp_path))
    executors = placement_executor(ComponentSettings(manifest=None))

    def taker(action: Action, service: str) -> object:
        chosen = PlacementDecision(action, service, "m.safetensors", 0, "")
        return next((e for e in executors.specific if e.takes(chosen)), executors.fallback)

    assert isinstance(taker(Action.LOAD, "comfyui"), ComfyUIWarmup)
    assert isinstance(taker(Action.UNLOAD, "comfyui"), ComfyUIWarmup)
    assert isinstance(taker(Action.DELETE, "comfyui"), ModelFiles)
    assert isinstance(taker(Action.LOAD, "a1111"), A1111Checkpoints)
    assert isinstance(taker(Action.UNLOAD, "ollama"), OllamaPreload)
    assert isinstance(taker(Action.DOWNLOAD, "comfyui"), ManifestDownloads)
    assert isinstance(taker(Action.DELETE, "ollama"), OllamaDelete)
    a1111_files = taker(Action.DELETE, "a1111")
    assert isinstance(a1111_files, A1111Files)
    assert (a1111_files.url, a1111_files.models_dir) == ("http://a1111.invalid:7860", tmp_path)
    assert isinstance(taker(Action.DOWNLOAD, "ollama"), OllamaPull)
    assert taker(Action.DOWNLOAD, "ollama").url == "http://127.0.0.1:11434"  # type: ignore[attr-defined]
    comfy = taker(Action.LOAD, "comfyui")
    assert isinstance(comfy, ComfyUIWarmup)
    assert comfy.url == "http://comfy.invalid:8188"


def test_bad_service_settings_for_placement_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMP_COMFYUI_URL", "not a url")
    with pytest.raises(ConfigurationError, match="invalid settings for placement: EMP_"):
        placement_executor(ComponentSettings(manifest=None))
    monkeypatch.delenv("EMP_COMFYUI_URL")
    monkeypatch.setenv("EMP_A1111_MODELS_DIR", "/nonexistent/models/Stable-diffusion")
    with pytest.raises(ConfigurationError, match="EMP_A1111_MODELS_DIR must be A1111's"):
        placement_executor(ComponentSettings(manifest=None))
