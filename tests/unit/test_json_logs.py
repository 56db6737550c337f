"""JSON log lines (``EMP_LOG_JSON=1``, what machines ship) carry the exception itself."""

from __future__ import annotations

import json

import pytest
import structlog

from emp_queue.telemetry.logging import configure_logging


def test_an_exception_is_logged_with_its_type_message_and_frames(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    try:
        raise ConnectionResetError("the service hung up")
    except ConnectionResetError as error:
        structlog.get_logger("test").error("job_handler_crashed", job_id="j1", exc_info=error)

    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "job_handler_crashed"
    assert line["level"] == "error"
    (exception,) = line["exception"]
    assert exception["exc_type"] == "ConnectionResetError"
    assert exception["exc_value"] == "the service hung up"
    assert exception["frames"][-1]["name"] == (
        "test_an_exception_is_logged_with_its_type_message_and_frames"
    )
