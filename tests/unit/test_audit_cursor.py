"""The audit log's page cursor: the stream id just below the last entry shown."""

from __future__ import annotations

import pytest

from emp_queue.api.audit import MAX_ID_PART, audited_action, entry_before


@pytest.mark.parametrize(
    ("entry_id", "before"),
    [
        ("1700000000000-3", "1700000000000-2"),
        ("1700000000000-0", f"1699999999999-{MAX_ID_PART}"),
        ("0-0", None),
        ("99999999999999999999-0", "+"),
        ("5-99999999999999999999", f"5-{MAX_ID_PART}"),
    ],
)
def test_the_cursor_is_the_id_just_below(entry_id: str, before: str | None) -> None:
    assert entry_before(entry_id) == before


def test_only_operator_routes_are_audited() -> None:
    assert audited_action("POST", "/api/jobs/j-1/cancel") == ("job.cancel", "j-1")
    assert audited_action("POST", "/api/machines/box/services/ollama/restart") == (
        "service.restart",
        "box/ollama",
    )
    assert audited_action("GET", "/api/jobs/j-1") is None
    assert audited_action("DELETE", "/api/jobs/j-1/cancel") is None
