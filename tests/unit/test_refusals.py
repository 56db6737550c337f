"""Broker errors in words a person can act on: which error replies are refusals to fix, and
the one line the CLI prints instead of a traceback."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from emp_queue.cli.main import broker_failure
from emp_queue.core.refusals import describe, refusal


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "maxmemory"),
        (ReadOnlyError("You can't write against a read only replica."), "EMP_REDIS_URL"),
        (ResponseError("MISCONF Errors writing to the AOF file"), "persistence"),
        (ResponseError("BUSY Valkey is busy running a script."), "script"),
        (ResponseError("NOREPLICAS Not enough good replicas to write."), "min-replicas"),
    ],
)
def test_refusals_say_what_to_fix(error: ResponseError, advice: str) -> None:
    meaning = refusal(error)
    assert meaning is not None
    assert advice in meaning
    assert describe(error).startswith("the queue's Redis/Valkey server refused the command")


def test_a_scripts_own_error_is_not_a_refusal() -> None:
    error = ResponseError("ERR user_function:12: Script attempted to access a global")
    assert refusal(error) is None
    assert describe(error) == (
        "the queue's Redis/Valkey server answered with an error: "
        "ERR user_function:12: Script attempted to access a global"
    )


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
        BusyLoadingError("Valkey is loading the dataset in memory"),
    ],
)
def test_an_unanswered_command_points_at_the_server_and_its_url(error: RedisError) -> None:
    line = describe(error)
    assert line.startswith("the queue's Redis/Valkey server did not answer (")
    assert "EMP_REDIS_URL" in line
    assert ".)" not in line


def test_the_cli_words_broker_errors_and_leaves_others_alone() -> None:
    assert broker_failure(OutOfMemoryError("command not allowed")) == describe(
        OutOfMemoryError("command not allowed")
    )
    assert broker_failure(ValueError("not a broker error")) is None


def test_a_task_groups_broker_error_is_worded_too() -> None:
    refused = OutOfMemoryError("command not allowed")
    nested = ExceptionGroup("worker", [ExceptionGroup("tasks", [refused])])
    assert broker_failure(nested) == describe(refused)
    mixed = ExceptionGroup("worker", [refused, ValueError("a bug")])
    assert broker_failure(mixed) is None  # a bug beside it keeps its traceback


@pytest.mark.parametrize(
    ("error", "start", "advice"),
    [
        (AuthenticationError("Authentication required."), "refused the credentials", "user:pass"),
        (
            AuthenticationError("invalid username-password pair or user is disabled."),
            "refused the credentials",
            "EMP_REDIS_URL",
        ),
        (
            NoPermissionError("User limited has no permissions to run the 'multi' command"),
            "the user in EMP_REDIS_URL may not",
            "{<namespace>}:*",
        ),
        (ResponseError("DB index is out of range"), "has no such database", "`databases`"),
    ],
)
def test_credentials_permissions_and_databases_point_at_the_url(
    error: RedisError, start: str, advice: str
) -> None:
    line = describe(error)
    assert start in line
    assert advice in line
    assert "did not answer" not in line  # an authentication error is a ConnectionError
