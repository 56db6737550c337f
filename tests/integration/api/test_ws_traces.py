"""A job submitted over the client WebSocket starts its trace as a REST submit does: the
socket's submit span is stored as the job's traceparent, a child of the message's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from emp_queue import JobQueue
from emp_queue.api.app import create_app
from emp_queue.api.settings import ApiSettings
from emp_queue.core.settings import CoreSettings
from emp_queue.telemetry.tracing import (
    JobTracing,
    TracingSettings,
    start_tracing,
    traceparent_of,
)
from tests.integration.api.conftest import ApiKeys
from tests.integration.api.test_websockets import client_socket, receive, send

CALLER = "00-1bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[JobTracing]:
    started = start_tracing(TracingSettings(), "emp-api", exporter=exporter)
    assert started is not None
    yield started
    started.close()


@pytest.fixture
def app(
    api_settings: ApiSettings, core_settings: CoreSettings, redis_client: Redis,
    tracing: JobTracing,
) -> FastAPI:  # fmt: skip
    return create_app(api_settings, core_settings, redis_client, tracing=tracing)


async def test_a_socket_submit_is_a_span_stored_as_the_jobs_traceparent(
    live_url: str, api_keys: ApiKeys, job_queue: JobQueue, exporter: InMemorySpanExporter
) -> None:
    async with client_socket(live_url, api_keys.acme) as ws:
        await send(ws, "submit_job", message_id="m-t", service_required="sim", traceparent=CALLER)
        submitted = await receive(ws)
    assert submitted["type"] == "job_submitted", submitted
    [span] = [s for s in exporter.get_finished_spans() if s.name == "WS submit_job"]
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == CALLER.split("-")[2]
    assert (await job_queue.get(submitted["job_id"])).traceparent == traceparent_of(span)
