"""System programs some tests need beyond Python, and what to do when one is missing.

``./dev test`` asks :func:`plan_tool` for each tool before the tests run: present → run the
tests; missing but installable (root with ``apt-get``) → install it the way ``.ci/run`` does;
otherwise → skip the tests that need it with one visible line naming the command that enables
them. Tests mark their need with ``@pytest.mark.requires_tool("chromium")``; the root conftest
skips them with the same line when the tool is absent.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class SystemTool:
    name: str
    executable: str
    """Absolute path or a name looked up on PATH."""
    apt_package: str
    needed_by: str


TOOLS: dict[str, SystemTool] = {
    tool.name: tool
    for tool in (
        SystemTool("chromium", "/usr/bin/chromium", "chromium", "the monitor's browser tests"),
        SystemTool("git", "git", "git", "the component manager's custom-node tests"),
        SystemTool("prometheus", "prometheus", "prometheus", "the test against a real Prometheus"),
    )
}


class Action(StrEnum):
    RUN = "run"
    INSTALL = "install"
    SKIP = "skip"


@dataclass(frozen=True)
class ToolPlan:
    tool: SystemTool
    action: Action
    reason: str = ""

    @property
    def skip_line(self) -> str:
        """The one line printed (and used as the pytest skip reason) when tests are skipped."""
        return f"skipping {self.tool.needed_by}: {self.reason}"


def locate(tool: SystemTool) -> str | None:
    if os.path.isabs(tool.executable):
        return tool.executable if os.access(tool.executable, os.X_OK) else None
    return shutil.which(tool.executable)


def plan_tool(
    tool: SystemTool, *, found: bool, is_root: bool, has_apt: bool, install_allowed: bool
) -> ToolPlan:
    """Decide what to do about ``tool``; pure, so every branch has a unit test."""
    if found:
        return ToolPlan(tool, Action.RUN)
    command = f"apt-get install -y {tool.apt_package}"
    if not has_apt:
        return ToolPlan(
            tool,
            Action.SKIP,
            f"{tool.executable} is missing and this system has no apt-get; install "
            f"{tool.name} with your package manager, then rerun ./dev test",
        )
    if not is_root:
        return ToolPlan(
            tool, Action.SKIP, f"{tool.executable} is missing; run 'sudo {command}' to enable them"
        )
    if not install_allowed:
        return ToolPlan(
            tool,
            Action.SKIP,
            f"{tool.executable} is missing and EMP_TEST_INSTALL=0; run '{command}' to enable them",
        )
    return ToolPlan(tool, Action.INSTALL, f"installing {tool.apt_package} with apt-get")


def plan_here(tool: SystemTool) -> ToolPlan:
    """:func:`plan_tool` with the facts of this machine and environment."""
    return plan_tool(
        tool,
        found=locate(tool) is not None,
        is_root=hasattr(os, "geteuid") and os.geteuid() == 0,
        has_apt=shutil.which("apt-get") is not None,
        install_allowed=os.environ.get("EMP_TEST_INSTALL", "1") != "0",
    )
