from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.env.interfaces import Interfaces
from emp_queue.env.layout import EnvLayout
from tests.unit.env.env_samples import (
    COMPONENTS,
    PROFILES,
    SECRETS,
    FakeApiSettings,
    FakeCoreSettings,
    write_config,
)


@pytest.fixture
def layout(tmp_path: Path) -> EnvLayout:
    return write_config(tmp_path / "environments", COMPONENTS, PROFILES, SECRETS)


@pytest.fixture
def interfaces() -> Interfaces:
    return {"api": (FakeCoreSettings, FakeApiSettings)}
