from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    # Commands run through CliRunner configure structlog for the whole process, as `emp` does
    # at start-up; put the defaults back so later tests (capture_logs) see every level.
    yield
    structlog.reset_defaults()
