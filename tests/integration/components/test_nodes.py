"""Custom nodes: checkout at a ref from a local git origin, requirements, .env, idempotence."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from emp_queue.machine.components import (
    ComponentInstallError,
    ComponentManager,
    ComponentSettings,
    Manifest,
    NodeSpec,
    OutcomeStatus,
)
from tests.integration.components.conftest import NodeOrigin, ProgressLog, git

pytestmark = pytest.mark.requires_tool("git")


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def node(origin: NodeOrigin, **fields: object) -> Manifest:
    return Manifest.model_validate(
        {"custom_nodes": [{"name": "my-node", "git": str(origin.path), **fields}]}
    )


async def test_clone_at_a_branch_with_submodules(
    settings: ComponentSettings, node_origin: NodeOrigin, progress: ProgressLog
) -> None:
    report = await ComponentManager(settings).install_nodes(
        progress, manifest=node(node_origin, ref="feature")
    )

    assert report.installed == ("my-node",)
    checkout = settings.nodes_dir / "my-node"
    assert (checkout / "node.py").read_text() == "VERSION = 3\n"
    assert (checkout / "vendor" / "sub" / "weights.txt").read_text() == "submodule content\n"
    assert git(checkout, "rev-parse", "HEAD") == node_origin.feature
    assert progress.last("my-node")[1:3] == (4, 4)
    assert node_origin.feature in settings.resolved_state_file.read_text()


@pytest.mark.parametrize("ref_name", ["first", "tag"])
async def test_clone_at_a_commit_or_a_tag(
    settings: ComponentSettings, node_origin: NodeOrigin, ref_name: str
) -> None:
    ref = node_origin.first if ref_name == "first" else "v1.0"

    report = await ComponentManager(settings).install_nodes(manifest=node(node_origin, ref=ref))

    assert report.installed == ("my-node",)
    checkout = settings.nodes_dir / "my-node"
    assert (checkout / "node.py").read_text() == "VERSION = 1\n"
    assert git(checkout, "rev-parse", "HEAD") == node_origin.first


async def test_default_branch_without_submodules(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    await ComponentManager(settings).install_nodes(manifest=node(node_origin, recursive=False))

    checkout = settings.nodes_dir / "my-node"
    assert git(checkout, "rev-parse", "HEAD") == node_origin.main
    assert not (checkout / "vendor" / "sub" / "weights.txt").exists()


async def test_second_run_does_nothing(
    settings: ComponentSettings,
    node_origin: NodeOrigin,
    recording_git: str,
    git_log: Path,
) -> None:
    settings = settings.model_copy(update={"git_executable": recording_git})
    manifest = node(node_origin, ref="feature")
    await ComponentManager(settings).install_nodes(manifest=manifest)
    first_calls = read_lines(git_log)
    assert any(call.startswith("clone") for call in first_calls)

    report = await ComponentManager(settings).install_nodes(manifest=manifest)

    assert report.already_present == ("my-node",)
    assert report.installed == ()
    second_calls = read_lines(git_log)[len(first_calls) :]
    assert second_calls == ["rev-parse --verify --quiet HEAD"]


async def test_a_changed_ref_moves_the_checkout(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    await ComponentManager(settings).install_nodes(manifest=node(node_origin, ref="v1.0"))
    git(node_origin.path, "checkout", "--quiet", "feature")
    (node_origin.path / "node.py").write_text("VERSION = 4\n")
    git(node_origin.path, "commit", "--quiet", "-am", "pushed after the first install")

    report = await ComponentManager(settings).install_nodes(
        manifest=node(node_origin, ref="feature")
    )

    assert report.installed == ("my-node",)
    assert (settings.nodes_dir / "my-node" / "node.py").read_text() == "VERSION = 4\n"


async def test_requirements_are_installed_with_the_configured_pip(
    settings: ComponentSettings, node_origin: NodeOrigin, tmp_path: Path
) -> None:
    # Real pip, offline, into a throwaway --target folder: the project's venv stays untouched.
    site = tmp_path / "site"
    settings = settings.model_copy(
        update={
            "pip_python": Path(sys.executable),
            "pip_extra_args": ["--no-index", "--quiet", "--target", str(site)],
        }
    )

    report = await ComponentManager(settings).install_nodes(
        manifest=node(node_origin, requirements=True)
    )

    assert report.ok, report.failed
    assert (site / "tinynodepkg" / "__init__.py").read_text() == "VALUE = 1\n"


@pytest.mark.slow
async def test_failing_requirements_fail_the_node_with_pips_output(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    (node_origin.path / "requirements.txt").write_text("./missing-0.1-py3-none-any.whl\n")
    git(node_origin.path, "commit", "--quiet", "-am", "broken requirements")
    settings = settings.model_copy(update={"pip_extra_args": ["--no-index", "--dry-run"]})

    report = await ComponentManager(settings).install_nodes(
        manifest=node(node_origin, requirements=True)
    )

    (failure,) = report.failed
    assert "custom node 'my-node'" in failure.detail
    assert "missing-0.1-py3-none-any.whl" in failure.detail
    # Not recorded: the next run tries again.
    assert "my-node" not in (
        settings.resolved_state_file.read_text() if settings.resolved_state_file.exists() else ""
    )


async def test_env_file_is_rendered_from_the_environment(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    manifest = node(
        node_origin, env={"API_TOKEN": "${NODE_TOKEN}", "ENDPOINT": "https://${HOST}/v1", "X": "1"}
    )
    environ = {"NODE_TOKEN": "s3cr'et", "HOST": "api.example.com"}

    report = await ComponentManager(settings, environ=environ).install_nodes(manifest=manifest)

    assert report.ok
    env_file = settings.nodes_dir / "my-node" / ".env"
    assert dotenv_values(env_file) == {
        "API_TOKEN": "s3cr'et",
        "ENDPOINT": "https://api.example.com/v1",
        "X": "1",
    }
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


async def test_missing_variable_fails_the_node_before_any_clone(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    manifest = Manifest(
        custom_nodes=[
            NodeSpec(name="needs-token", git=str(node_origin.path), env={"T": "${NOPE_TOKEN}"}),
            NodeSpec(name="fine", git=str(node_origin.path)),
        ]
    )

    report = await ComponentManager(settings, environ={}).install_nodes(manifest=manifest)

    assert report.installed == ("fine",)
    (failure,) = report.failed
    assert failure.name == "needs-token"
    assert failure.status is OutcomeStatus.FAILED
    assert "custom node 'needs-token'" in failure.detail
    assert "NOPE_TOKEN is not set" in failure.detail
    assert not (settings.nodes_dir / "needs-token").exists()


async def test_unknown_ref_is_a_clear_failure(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    report = await ComponentManager(settings).install_nodes(
        manifest=node(node_origin, ref="no-such-branch")
    )

    (failure,) = report.failed
    assert "ref 'no-such-branch' is not a branch, tag or commit" in failure.detail
    assert not (settings.nodes_dir / "my-node").exists()
    with pytest.raises(ComponentInstallError, match="1 of 1 components failed"):
        report.raise_for_failures()


async def test_a_foreign_folder_is_not_overwritten(
    settings: ComponentSettings, node_origin: NodeOrigin
) -> None:
    (settings.nodes_dir / "my-node").mkdir(parents=True)
    (settings.nodes_dir / "my-node" / "precious.txt").write_text("mine")

    report = await ComponentManager(settings).install_nodes(manifest=node(node_origin))

    (failure,) = report.failed
    assert "exists and is not a git checkout" in failure.detail
    assert (settings.nodes_dir / "my-node" / "precious.txt").read_text() == "mine"
