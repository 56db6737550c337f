"""Bad input: a 4xx naming the field and the problem, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from emp_queue.api.app import create_app
from emp_queue.api.settings import ApiSettings
from emp_queue.core.requirements import REQUIREMENT_KEYS
from emp_queue.core.settings import CoreSettings
from emp_queue.models import JobSpec
from tests.integration.api.conftest import TEST_SERVICES, ApiKeys, bearer


def problems(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert body["error"] == "invalid_request"
    return {entry["field"]: entry["problem"] for entry in body["detail"]}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"service_required": "sim", "priority": 101}, "body.priority", "less than or equal"),
        ({"priority": 1}, "body.service_required", "required"),
        ({"service_required": "sim", "bogus": 1}, "body.bogus", "not permitted"),
        ({"service_required": "a b"}, "body.service_required", "pattern"),
        ({"service_required": "sim", "max_attempts": "x"}, "body.max_attempts", "integer"),
    ],
)
async def test_validation_errors_name_the_field(
    admin: httpx.AsyncClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = await admin.post("/api/jobs", json=body)

    assert response.status_code == 422
    assert words in problems(response)[field].lower()
    assert field in response.json()["message"]


async def test_query_and_path_problems_name_the_parameter(admin: httpx.AsyncClient) -> None:
    limit = await admin.get("/api/jobs", params={"limit": 0})
    cursor = await admin.get("/api/jobs", params={"cursor": "²"})
    status = await admin.get("/api/jobs", params={"status": "sleeping"})
    job_id = await admin.get("/api/jobs/bad id!")

    assert "query.limit" in problems(limit)
    assert "query.cursor" in problems(cursor)
    assert "query.status" in problems(status)
    assert "path.job_id" in problems(job_id)


async def test_unknown_requirement_lists_the_known_keys(admin: httpx.AsyncClient) -> None:
    body = {"service_required": "sim", "requirements": {"vram": 24}}

    response = await admin.post("/api/jobs", json=body)

    assert response.status_code == 422
    assert response.json()["error"] == "unknown_requirement"
    assert "'vram'" in response.json()["message"]
    assert all(key in response.json()["message"] for key in REQUIREMENT_KEYS)


async def test_invalid_requirement_value_is_422(admin: httpx.AsyncClient) -> None:
    body = {"service_required": "sim", "requirements": {"models": "sdxl"}}

    response = await admin.post("/api/jobs", json=body)

    assert response.status_code == 422
    assert "requirements.models" in response.json()["message"]


async def test_a_bad_job_in_a_batch_is_named_and_nothing_is_stored(
    admin: httpx.AsyncClient,
) -> None:
    body = {"jobs": [{"service_required": "sim"}, {"service_required": "sim", "priority": -1}]}

    response = await admin.post("/api/jobs/batch", json=body)

    assert response.status_code == 422
    assert "body.jobs.1.priority" in problems(response)
    assert (await admin.get("/api/jobs")).json()["jobs"] == []


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"service_required": "sim", "payload": {"x": NaN}}',
        b'{"service_required": "sim", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"service_required": "sim", "payload": {"big": 1e400}}',
        b'{"service_required": "sim", "priority": 1e400}',
        '{"service_required": "\ud83d\ude00"}'.encode("utf-8", "surrogatepass"),
        b"\xff\xfe",
    ],
)
async def test_malformed_bodies_are_4xx(admin: httpx.AsyncClient, content: bytes) -> None:
    response = await admin.post(
        "/api/jobs", content=content, headers={"Content-Type": "application/json"}
    )

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]


@pytest.fixture
async def small_body_api(
    core_settings: CoreSettings, redis_client: Redis, api_keys: ApiKeys
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ApiSettings(services=TEST_SERVICES, max_body_bytes=1000, sweep_interval_s=None)
    app = create_app(settings, core_settings, redis_client)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api.test",
        headers=bearer(api_keys.admin),
    ) as http:
        yield http


async def test_a_body_over_the_limit_is_413(small_body_api: httpx.AsyncClient) -> None:
    big = {"service_required": "sim", "payload": {"blob": "x" * 2000}}

    declared = await small_body_api.post("/api/jobs", json=big)

    async def chunks() -> AsyncIterator[bytes]:
        encoded = json.dumps(big).encode()
        for start in range(0, len(encoded), 100):
            yield encoded[start : start + 100]

    streamed = await small_body_api.post(
        "/api/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    small = await small_body_api.post("/api/jobs", json={"service_required": "sim"})

    assert declared.status_code == 413
    assert declared.json()["error"] == "content_too_large"
    assert "Transfer-Encoding" not in declared.request.headers
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "content_too_large"
    assert streamed.request.headers["Transfer-Encoding"] == "chunked"
    assert small.status_code == 201


def test_every_operation_declares_its_responses(app: FastAPI) -> None:
    document = app.openapi()

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            success = next(code for code in responses if code.startswith("2"))
            assert responses[success].get("content"), (method, path)
            assert "422" in responses or method == "get", (method, path)
            if path not in ("/health", "/ready", "/version"):
                assert {"401", "403", "429"} <= set(responses), (method, path)
                assert operation["security"] == [{"ApiKey": []}], (method, path)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", 201),
        ("application/json; charset=utf-8", 201),
        ("application/vnd.emp+json", 201),
        ("text/plain", 422),
        (None, 422),
    ],
)
async def test_a_submit_body_must_be_sent_as_json(
    admin: httpx.AsyncClient, content_type: str | None, expected: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await admin.post(
        "/api/jobs", content=b'{"service_required": "sim"}', headers=headers
    )

    assert response.status_code == expected, response.text
    if expected == 422:
        assert "application/json" in problems(response)["body"]


def test_the_submit_route_documents_its_body_and_key(app: FastAPI) -> None:
    # POST /api/jobs reads its body itself (decision 0008): its OpenAPI entry is declared.
    document = app.openapi()
    operation = document["paths"]["/api/jobs"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    reference = body["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]
    assert schema["required"] == ["service_required"]
    assert set(schema["properties"]) == set(JobSpec.model_fields)
    assert operation["security"] == [{"ApiKey": []}]
    assert "ApiKey" in document["components"]["securitySchemes"]
    created = operation["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/JobOut"}
