"""Installing one ComfyUI custom node: git checkout at a ref, requirements, and its ``.env``.

A node is done when its checkout is at the commit recorded for the same manifest entry; then
nothing runs but the ``.env`` rendering (the environment may have changed since the last boot).
Branches are therefore not re-fetched on restart: pin a tag or commit, or change the manifest
entry, to move a node.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import structlog

from emp_queue.env.output import render_env_file, write_private
from emp_queue.machine.components.commands import CommandResult, run_command
from emp_queue.machine.components.errors import GitError, MissingVariableError, RequirementsError
from emp_queue.machine.components.manifest import NodeSpec
from emp_queue.machine.components.progress import ProgressCallback
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.machine.components.state import ComponentState, NodeRecord

log = structlog.get_logger(__name__)

TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
COMMIT_LIKE = re.compile(r"^[0-9a-fA-F]{4,40}$")
NODE_STEPS = 4
# Never wait for a password on a machine nobody watches.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def render_node_env(spec: NodeSpec, environ: Mapping[str, str]) -> str | None:
    """The node's ``.env`` text, or None when it declares no env; ``${VAR}`` from ``environ``."""
    if not spec.env:
        return None
    values: dict[str, str] = {}
    for key, template in spec.env.items():

        def substitute(match: re.Match[str], key: str = key) -> str:
            variable = match.group(1)
            if variable not in environ:
                raise MissingVariableError(spec.name, key, variable)
            return environ[variable]

        values[key] = TEMPLATE_VARIABLE.sub(substitute, template)
    return render_env_file([f"written by emp components for custom node {spec.name}"], values)


class NodeInstaller:
    """Installs custom nodes under ``settings.nodes_dir``, recording each in ``state``."""

    def __init__(
        self, settings: ComponentSettings, state: ComponentState, environ: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._state = state
        self._environ = environ

    async def install(self, spec: NodeSpec, progress: ProgressCallback) -> tuple[bool, str]:
        """Install ``spec``; return (whether anything was done, what), for the report."""
        env_text = render_node_env(spec, self._environ)
        target = self._settings.nodes_dir / spec.name
        record = self._state.get(spec.name)
        if (
            record is not None
            and record.satisfies(spec)
            and await self._head(target) == record.commit
        ):
            self._write_env(target, env_text)
            detail = f"already at {record.commit[:12]}"
            progress(spec.name, NODE_STEPS, NODE_STEPS, detail)
            return False, detail
        progress(spec.name, 0, NODE_STEPS, "fetching")
        commit = await self._checkout(spec, target, progress)
        if spec.requirements:
            progress(spec.name, 2, NODE_STEPS, "installing requirements")
            await self._install_requirements(spec, target)
        progress(spec.name, 3, NODE_STEPS, "writing .env")
        self._write_env(target, env_text)
        await self._state.put(
            spec.name,
            NodeRecord(
                git=spec.git,
                ref=spec.ref,
                recursive=spec.recursive,
                requirements=spec.requirements,
                commit=commit,
            ),
        )
        detail = f"installed at {commit[:12]}"
        progress(spec.name, NODE_STEPS, NODE_STEPS, detail)
        log.info("component_node_installed", node=spec.name, ref=spec.ref, commit=commit)
        return True, detail

    async def _git(self, *args: str, cwd: Path | None = None) -> CommandResult:
        return await run_command([self._settings.git_executable, *args], cwd=cwd, env=GIT_ENV)

    async def _git_ok(self, spec: NodeSpec, *args: str, cwd: Path | None = None) -> str:
        result = await self._git(*args, cwd=cwd)
        if not result.ok:
            raise GitError(f"custom node {spec.name!r} ({spec.git}): {result.describe()}")
        return result.stdout.strip()

    async def _head(self, target: Path) -> str | None:
        if not _exists(target / ".git"):
            return None
        result = await self._git("rev-parse", "--verify", "--quiet", "HEAD", cwd=target)
        return result.stdout.strip() if result.ok else None

    async def _checkout(self, spec: NodeSpec, target: Path, progress: ProgressCallback) -> str:
        if _exists(target):
            if not _exists(target / ".git"):
                raise GitError(
                    f"custom node {spec.name!r}: {target} exists and is not a git checkout; "
                    "remove it or give the node another name"
                )
            await self._git_ok(spec, "remote", "set-url", "origin", spec.git, cwd=target)
            await self._git_ok(
                spec, "fetch", "--quiet", "--tags", "--force", "--prune", "origin", cwd=target
            )
            return await self._checkout_ref(spec, target, progress)
        # Clone beside the target and move it in once checked out, so that a clone interrupted
        # by preemption never looks like an installed node.
        partial = target.with_name(f".{spec.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        await self._git_ok(spec, "clone", "--quiet", "--no-checkout", "--", spec.git, str(partial))
        commit = await self._checkout_ref(spec, partial, progress)
        partial.rename(target)
        return commit

    async def _checkout_ref(self, spec: NodeSpec, repo: Path, progress: ProgressCallback) -> str:
        commit = await self._resolve(spec, repo)
        progress(spec.name, 1, NODE_STEPS, f"checking out {commit[:12]}")
        await self._git_ok(
            spec,
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "--quiet",
            "--force",
            "--detach",
            commit,
            cwd=repo,
        )
        if spec.recursive:
            await self._git_ok(spec, "submodule", "sync", "--quiet", "--recursive", cwd=repo)
            await self._git_ok(
                spec,
                "submodule",
                "update",
                "--quiet",
                "--init",
                "--recursive",
                "--force",
                cwd=repo,
            )
        return commit

    async def _resolve(self, spec: NodeSpec, repo: Path) -> str:
        """The commit a ref names: a branch of origin, then a tag, then a commit id."""
        if spec.ref is None:
            candidates = ["refs/remotes/origin/HEAD"]
        else:
            candidates = [f"refs/remotes/origin/{spec.ref}", f"refs/tags/{spec.ref}", spec.ref]
        for candidate in candidates:
            result = await self._git(
                "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", cwd=repo
            )
            if result.ok:
                return result.stdout.strip()
        if spec.ref is not None and COMMIT_LIKE.match(spec.ref):
            # A commit no branch or tag reaches is only sent when asked for by id.
            fetched = await self._git("fetch", "--quiet", "origin", spec.ref, cwd=repo)
            if fetched.ok:
                return await self._git_ok(
                    spec, "rev-parse", "--verify", "FETCH_HEAD^{commit}", cwd=repo
                )
        raise GitError(
            f"custom node {spec.name!r}: ref {spec.ref or 'HEAD'!r} is not a branch, tag or "
            f"commit of {spec.git}; fix the node's ref in the manifest"
        )

    async def _install_requirements(self, spec: NodeSpec, target: Path) -> None:
        requirements = target / "requirements.txt"
        if not requirements.is_file():
            raise RequirementsError(
                f"custom node {spec.name!r} asks for requirements but has no requirements.txt "
                f"at {spec.ref or 'its default branch'}; set requirements to false"
            )
        argv = [
            str(self._settings.pip_python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            "requirements.txt",
            *self._settings.pip_extra_args,
        ]
        result = await run_command(argv, cwd=target)
        if not result.ok:
            raise RequirementsError(f"custom node {spec.name!r}: {result.describe()}")

    def _write_env(self, target: Path, text: str | None) -> None:
        if text is None:
            return
        path = target / ".env"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            return
        write_private(path, text, 0o600)
