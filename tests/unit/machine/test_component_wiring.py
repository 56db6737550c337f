"""`emp machine` turns EMP_COMPONENTS_MANIFEST into the custom-nodes and models steps."""

from __future__ import annotations

from pathlib import Path

from emp_queue.cli.machine_commands import component_installers
from emp_queue.machine.components import ComponentKind, ComponentSettings, ComponentStep


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
