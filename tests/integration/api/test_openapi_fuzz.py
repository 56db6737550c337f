"""schemathesis over the app's own OpenAPI document: no input, valid or invalid, yields a 5xx
or a response that breaks the document. Bounded (derandomised, a few examples per operation and
mode) to fit the test suite, and split in parts so the tier's workers share it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.integration.api.threaded_api import RunningApi, threaded_api

if TYPE_CHECKING:
    from collections.abc import Callable

    import schemathesis

EXAMPLES_PER_OPERATION = 10
PARTS = 4
"""The operations are fuzzed in this many tests (each every PARTS-th operation), which xdist
spreads over its workers: one test of all of them took 17-36 s on one worker."""


def contract_checks() -> list[Callable[..., Any]]:
    """The contract of issue 3: no server error, and every response as the document declares
    it. (Acceptance of every schema-valid body is not among them: `requirements` is a free-form
    object in the document, but unknown requirement keys are refused with 422 on purpose.)

    schemathesis is imported here, by the test that uses it, not when the module is collected:
    every xdist worker collects every module, and the import cost each of them 0.3 s of CPU
    (the tier runs with its pytest plugin off)."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]


def takes_input(definition: dict[str, Any]) -> bool:
    return bool(definition.get("requestBody") or definition.get("parameters"))


@pytest.fixture
def served(redis_url: str, namespace: str) -> Iterator[RunningApi]:
    with threaded_api(redis_url, namespace, with_worker=False) as api:
        yield api


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("part", range(PARTS))
def test_no_request_breaks_the_contract(served: RunningApi, part: int) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    checks = contract_checks()
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    headers = {"Authorization": f"Bearer {served.admin_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    operations.sort(key=lambda operation: operation.label)

    for operation, mode in itertools.product(operations[part::PARTS], GenerationMode):
        if mode is GenerationMode.NEGATIVE and not takes_input(operation.definition.raw):
            continue  # nothing a client sends there can be invalid

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=served.url, headers=headers, checks=checks, timeout=10)

        check()
