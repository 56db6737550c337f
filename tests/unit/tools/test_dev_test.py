"""What ``./dev test`` hands to pytest: workers per tier, plugins left out, bytecode cached."""

from __future__ import annotations

from tools.dev_test import TIERS, pytest_command, pytest_env


def test_integration_runs_four_workers_per_core_and_unit_one_process() -> None:
    assert TIERS["integration"].workers(2) == 8
    assert TIERS["e2e"].workers(2) == 2
    unit = pytest_command(TIERS["unit"], ["-x"])
    assert "-n" not in unit
    assert unit[-1] == "-x"
    assert unit[unit.index("no:schemathesis") - 1 :][:2] == ["-p", "no:schemathesis"]


def test_a_worker_count_given_by_hand_wins() -> None:
    command = pytest_command(TIERS["integration"], ["-n", "1"])

    assert command.count("-n") == 1
    assert command[-2:] == ["-n", "1"]


def test_bytecode_is_written_even_when_the_shell_forbids_it() -> None:
    env = pytest_env({"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/bin"})

    assert env == {"PATH": "/bin"}
