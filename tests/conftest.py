import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from tools import quick_exit
from tools.slow_first import slow_first
from tools.system_tools import TOOLS, Action, plan_here

TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "e2e")

quick_exit.install(os.environ)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier (its folder under tests/), skip the tests whose system
    tool is missing with the line that says how to get it, and, on xdist, start the slow tests
    first on each worker (tools/slow_first.py; this runs after pytest-randomly's shuffle)."""
    plans = {}
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        for marker in item.iter_markers("requires_tool"):
            name = marker.args[0]
            if name not in plans:
                plans[name] = plan_here(TOOLS[name])
            if plans[name].action is not Action.RUN:
                item.add_marker(pytest.mark.skip(reason=plans[name].skip_line))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    items[:] = slow_first(items, lambda item: item.get_closest_marker("slow") is not None, workers)


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    # Commands run through CliRunner configure structlog for the whole process, as `emp` does
    # at start-up; put the defaults back so later tests (capture_logs) see every level.
    yield
    structlog.reset_defaults()
