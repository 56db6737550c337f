"""The manager as the agent's startup steps: progress summed into (message, fraction)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emp_queue.machine.components import (
    ComponentInstallError,
    ComponentKind,
    ComponentManager,
    ComponentSettings,
    ComponentStep,
)
from emp_queue.machine.startup import ComponentInstaller, ComponentInstallers
from tests.integration.components.conftest import ModelServer, NodeOrigin, model_entry

pytestmark = pytest.mark.requires_tool("git")


class StepLog:
    """The agent's side: an async (message, fraction) callable."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, float | None]] = []

    async def __call__(self, message: str, fraction: float | None = None) -> None:
        self.updates.append((message, fraction))


def manager_for(settings: ComponentSettings, manifest: Path) -> ComponentManager:
    return ComponentManager(settings.model_copy(update={"manifest": str(manifest)}))


async def test_steps_install_and_report_progress(
    settings: ComponentSettings, node_origin: NodeOrigin, model_server: ModelServer, tmp_path: Path
) -> None:
    data = b"x" * 300_000
    manifest = tmp_path / "machine.json"
    manifest.write_text(
        json.dumps(
            {
                "custom_nodes": [{"name": "n", "git": str(node_origin.path), "ref": "v1.0"}],
                "models": [model_entry(model_server, "m", data)],
            }
        )
    )
    manager = manager_for(settings, manifest)
    nodes: ComponentInstaller = ComponentStep(manager, ComponentKind.CUSTOM_NODE)
    models: ComponentInstaller = ComponentStep(manager, ComponentKind.MODEL)
    installers = ComponentInstallers(custom_nodes=nodes, models=models)
    node_log, model_log = StepLog(), StepLog()

    await nodes.install(node_log)
    await models.install(model_log)

    assert installers.custom_nodes is nodes
    assert node_log.updates[-1] == ("1 installed, 0 already present", 1.0)
    assert model_log.updates[-1] == ("1 installed, 0 already present", 1.0)
    assert any(message.startswith("m: ") for message, _ in model_log.updates)
    assert (settings.models_dir / "checkpoints" / "m.safetensors").read_bytes() == data


async def test_a_failed_component_fails_the_step(
    settings: ComponentSettings, model_server: ModelServer, tmp_path: Path
) -> None:
    entry = model_entry(model_server, "m", b"abc") | {"sha256": "0" * 64}
    manifest = tmp_path / "machine.toml"
    manifest.write_text(
        "[[models]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    )
    step = ComponentStep(manager_for(settings, manifest), ComponentKind.MODEL)

    with pytest.raises(ComponentInstallError, match=r"- model 'm': SHA-256 mismatch"):
        await step.install(StepLog())
    assert step.report is not None
    assert [outcome.name for outcome in step.report.failed] == ["m"]
