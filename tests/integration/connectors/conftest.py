"""Fixtures every connector test shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import local_storage


@pytest.fixture
def storage(tmp_path: Path) -> AssetStorage:
    """A local-directory asset store under the test's ``tmp_path / "assets"``."""
    return local_storage(tmp_path / "assets")
