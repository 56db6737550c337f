"""One trace per job: API → Redis → worker → webhook, continued through the stored traceparent.

The API and the worker each get a tracer provider of their own, exporting to an in-memory
exporter of their own, as two processes would: the only thing that links their spans is the
``traceparent`` the API writes into the job's Redis record and the worker reads back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from emp_queue import JobQueue
from emp_queue.models import WorkerCapabilities
from emp_queue.storage import AssetStorage
from emp_queue.telemetry.tracing import (
    JobTracing,
    TracingSettings,
    start_tracing,
    traceparent_of,
)
from emp_queue.testing.api_client import api_client_for
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver
from emp_queue.webhooks.dispatcher import WebhookDispatcher
from emp_queue.webhooks.settings import WebhookSettings
from emp_queue.worker.context import JobContext
from emp_queue.worker.running_job import ConnectorJob
from emp_queue.worker.runtime import Worker
from emp_queue.worker.settings import WorkerSettings

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"


class Traced:
    """A process's tracing and the spans it exported."""

    def __init__(self, service_name: str) -> None:
        self.exporter = InMemorySpanExporter()
        tracing = start_tracing(TracingSettings(), service_name, exporter=self.exporter)
        assert tracing is not None
        self.tracing: JobTracing = tracing

    def spans(self) -> dict[str, ReadableSpan]:
        return {span.name: span for span in self.exporter.get_finished_spans()}


@pytest.fixture
def api_side() -> Iterator[Traced]:
    traced = Traced("emp-api")
    yield traced
    traced.tracing.close()


@pytest.fixture
def worker_side() -> Iterator[Traced]:
    traced = Traced("emp-worker")
    yield traced
    traced.tracing.close()


@pytest.fixture
async def ai_service() -> AsyncIterator[WebhookReceiver]:
    """Any HTTP service on loopback: the handler's call to "the AI service"."""
    fake = WebhookReceiver(status_code=200)
    async with fake.running():
        yield fake


async def wait_for_span(traced: Traced, name: str) -> ReadableSpan:
    async with asyncio.timeout(30):
        while True:
            if name in (spans := traced.spans()):
                return spans[name]
            await asyncio.sleep(0.05)  # the exporter tells no one


async def test_one_trace_runs_from_the_request_through_the_worker_to_the_webhook(
    redis_client: Redis,
    namespace: str,
    redis_url: str,
    tmp_path: Path,
    job_queue: JobQueue,
    asset_storage: AssetStorage,
    api_side: Traced,
    worker_side: Traced,
    ai_service: WebhookReceiver,
) -> None:
    receiver = WebhookReceiver()
    ai_client = httpx.AsyncClient()
    HTTPXClientInstrumentor.instrument_client(
        ai_client, tracer_provider=worker_side.tracing.provider
    )

    async def handler(context: JobContext) -> dict[str, str]:
        await ai_client.post(ai_service.url + "/generate", json={"prompt": "a cat"})
        asset = await ConnectorJob(context, asset_storage, 0.1).store(
            b"png bytes", content_type="image/png"
        )
        return {"image": asset.url}

    worker = Worker(
        job_queue,
        "traced-worker",
        WorkerCapabilities(services=["sim"]),
        handler,
        WorkerSettings(drain_grace_s=10),
        tracing=worker_side.tracing,
    )
    dispatcher = WebhookDispatcher(
        redis_client,
        job_queue,
        WebhookSettings(allow_hosts=["127.0.0.1/32"], idle_poll_s=0.05),
        tracing=api_side.tracing,
    )
    await dispatcher.prepare()
    async with (
        receiver.running(),
        ai_client,
        api_client_for(
            redis_client, namespace, redis_url, tmp_path, services=["sim"],
            tracing=api_side.tracing,
        ) as api,
        asyncio.TaskGroup() as tasks,
    ):  # fmt: skip
        delivering = tasks.create_task(dispatcher.run())
        working = tasks.create_task(worker.run())
        response = await api.http.post(
            "/api/jobs",
            json={"service_required": "sim", "webhook": receiver.url + "/hook"},
            headers={**api.as_client, "traceparent": CALLER_TRACEPARENT},
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        await receiver.wait_for_accepted(1, timeout_s=30)
        await wait_for_span(api_side, "webhook.deliver")
        await wait_for_span(worker_side, "job.complete")
        worker.stop()
        dispatcher.close()
        await asyncio.wait({delivering, working}, timeout=30)

    api_spans, worker_spans = api_side.spans(), worker_side.spans()
    submit = api_spans["POST /api/jobs"]
    everything = [*api_spans.values(), *worker_spans.values()]
    # One trace, the caller's, in both processes.
    assert {span.context.trace_id for span in everything} == {int(CALLER_TRACE_ID, 16)}
    assert submit.kind is SpanKind.SERVER
    assert submit.parent is not None
    assert submit.parent.span_id == int(CALLER_SPAN_ID, 16)
    # The stored traceparent names the submit span: what the worker continues.
    stored = (await job_queue.get(job_id)).traceparent
    assert stored == traceparent_of(submit)
    assert stored is not None
    assert stored.startswith(f"00-{CALLER_TRACE_ID}-")

    def parent_of(span: ReadableSpan) -> int | None:
        return span.parent.span_id if span.parent is not None else None

    for name in ("job.queue_wait", "job.claim", "job.run", "job.complete"):
        assert parent_of(worker_spans[name]) == submit.context.span_id, name
        assert worker_spans[name].attributes is not None
        assert worker_spans[name].attributes["emp.job_id"] == job_id
    run = worker_spans["job.run"]
    ai_call = next(span for span in worker_spans.values() if span.kind is SpanKind.CLIENT)
    assert parent_of(ai_call) == run.context.span_id
    assert parent_of(worker_spans["job.upload"]) == run.context.span_id
    assert parent_of(api_spans["webhook.deliver"]) == submit.context.span_id
    # In order: waited, claimed, ran, completed, told the receiver.
    wait, claim = worker_spans["job.queue_wait"], worker_spans["job.claim"]
    complete, deliver = worker_spans["job.complete"], api_spans["webhook.deliver"]
    assert wait.start_time is not None
    assert submit.start_time is not None
    assert submit.start_time <= wait.start_time + 5_000_000  # Redis's clock vs ours: 5 ms
    assert claim.end_time is not None
    assert run.start_time is not None
    assert claim.end_time <= run.start_time
    assert run.end_time is not None
    assert complete.end_time is not None
    assert run.end_time <= complete.end_time
    assert deliver.start_time is not None
    assert deliver.start_time >= run.end_time
    # The AI service and the webhook receiver were told the trace too.
    [generate] = ai_service.received
    assert generate.headers["traceparent"].split("-")[1] == CALLER_TRACE_ID
    [hook] = receiver.received
    assert hook.headers["traceparent"].split("-")[1] == CALLER_TRACE_ID


async def test_without_a_caller_traceparent_the_request_starts_the_trace(
    redis_client: Redis, namespace: str, redis_url: str, tmp_path: Path, api_side: Traced
) -> None:
    async with api_client_for(
        redis_client, namespace, redis_url, tmp_path, services=["sim"], tracing=api_side.tracing
    ) as api:
        response = await api.http.post(
            "/api/jobs", json={"service_required": "sim"}, headers=api.as_client
        )
        batch = await api.http.post(
            "/api/jobs/batch",
            json={"jobs": [{"service_required": "sim"}, {"service_required": "sim"}]},
            headers=api.as_client,
        )
    assert response.status_code == 201
    assert batch.status_code == 201
    spans = api_side.spans()
    submit, submit_batch = spans["POST /api/jobs"], spans["POST /api/jobs/batch"]
    assert submit.parent is None
    assert submit_batch.parent is None
    assert response.json()["traceparent"] == traceparent_of(submit)
    # Every job of a batch continues the batch request's trace.
    assert {job["traceparent"] for job in batch.json()["jobs"]} == {traceparent_of(submit_batch)}
