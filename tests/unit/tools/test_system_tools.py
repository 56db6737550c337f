"""What ``./dev test`` does about a missing system program: run, install, or skip with a line."""

from __future__ import annotations

import pytest
from tools.system_tools import TOOLS, Action, plan_tool

CHROMIUM = TOOLS["chromium"]


def test_a_present_tool_runs_its_tests() -> None:
    plan = plan_tool(CHROMIUM, found=True, is_root=False, has_apt=False, install_allowed=False)
    assert plan.action is Action.RUN


def test_root_with_apt_installs_the_missing_tool() -> None:
    plan = plan_tool(CHROMIUM, found=False, is_root=True, has_apt=True, install_allowed=True)
    assert plan.action is Action.INSTALL
    assert "chromium" in plan.reason


@pytest.mark.parametrize(
    ("is_root", "has_apt", "install_allowed", "command"),
    [
        (False, True, True, "sudo apt-get install -y chromium"),
        (True, True, False, "apt-get install -y chromium"),
        (True, False, True, "install chromium with your package manager"),
    ],
)
def test_otherwise_the_tests_are_skipped_with_the_command_that_enables_them(
    is_root: bool, has_apt: bool, install_allowed: bool, command: str
) -> None:
    plan = plan_tool(
        CHROMIUM, found=False, is_root=is_root, has_apt=has_apt, install_allowed=install_allowed
    )
    assert plan.action is Action.SKIP
    assert plan.skip_line.startswith("skipping the monitor's browser tests: /usr/bin/chromium")
    assert command in plan.skip_line
    assert "\n" not in plan.skip_line
