"""``emp components install`` with a TOML manifest naming a node from a local origin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emp_queue.cli.components_commands import components_app
from tests.integration.components.conftest import NodeOrigin, git

pytestmark = pytest.mark.requires_tool("git")


@pytest.fixture
def component_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMP_COMPONENTS_NODES_DIR", str(tmp_path / "nodes"))
    monkeypatch.setenv("EMP_COMPONENTS_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("EMP_COMPONENTS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "nodes"


def test_install_from_a_toml_manifest(
    node_origin: NodeOrigin, component_env: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "machine.toml"
    manifest.write_text(
        f'[[custom_nodes]]\nname = "n1"\ngit = "{node_origin.path}"\nref = "v1.0"\n'
    )

    first = CliRunner().invoke(components_app, ["install", "--manifest", str(manifest)])
    second = CliRunner().invoke(components_app, ["install", "--manifest", str(manifest), "--json"])

    assert first.exit_code == 0, first.output
    assert "installed" in first.output
    assert git(component_env / "n1", "rev-parse", "HEAD") == node_origin.first
    assert second.exit_code == 0, second.output
    outcomes = json.loads(second.output)["outcomes"]
    assert [(o["name"], o["status"]) for o in outcomes] == [("n1", "already_present")]


def test_a_failed_component_exits_1(
    node_origin: NodeOrigin, component_env: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "machine.json"
    manifest.write_text(
        json.dumps({"custom_nodes": [{"name": "n1", "git": str(node_origin.path), "ref": "nope"}]})
    )

    result = CliRunner().invoke(components_app, ["install", "--manifest", str(manifest)])

    assert result.exit_code == 1
    assert "failed" in result.output


def test_no_manifest_is_a_usage_error(component_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMP_COMPONENTS_MANIFEST", raising=False)

    result = CliRunner().invoke(components_app, ["install"])

    assert result.exit_code == 2
    assert "no manifest" in result.output
