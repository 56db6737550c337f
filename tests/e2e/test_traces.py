"""`emp api` and `emp worker` as separate processes, both exporting OTLP to a receiver in the
test: one trace id from the caller's traceparent, spans from both processes, each worker span
a child of the API's submit span, in order — linked only by the job's Redis record."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from tests.e2e.api_process import running_api, wait_ready
from tests.e2e.worker_processes import until_registered, worker_env, worker_process

from emp_queue import JobQueue, JobSpec
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.testing.fakes.ollama import FakeOllama
from emp_queue.testing.fakes.otlp_receiver import OtlpReceiver
from emp_queue.testing.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

STARTUP_S = 60
SPAN_KIND_CLIENT = 3  # OTLP's Span.SpanKind.SPAN_KIND_CLIENT
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
SPANS = {"POST /api/jobs", "job.queue_wait", "job.claim", "job.run", "job.upload",
         "job.complete", "webhook.deliver"}  # fmt: skip


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 0.1 s, not every 5 s
    }


@pytest.mark.timeout(180)
async def test_one_trace_crosses_the_api_and_worker_processes(
    redis_url: str, redis_client: Redis, namespace: str, tmp_path: Path
) -> None:
    collector, hook = OtlpReceiver(), WebhookReceiver()
    queue = JobQueue(redis_client, namespace=namespace)
    key = await ApiKeyStore(redis_client, queue.keys).create(Role.ADMIN, label="traces")
    api_env = {
        "EMP_API_SERVICES": '["simulation"]',
        "EMP_WEBHOOKS_ALLOW_HOSTS": '["127.0.0.1/32"]',
        "EMP_WEBHOOKS_IDLE_POLL_S": "0.1",
    }
    async with collector.running(), hook.running():
        env = tracing_env(collector)
        with running_api(redis_url, namespace, {**api_env, **env}) as (api, url):
            await asyncio.to_thread(wait_ready, url, api, STARTUP_S)
            assets = tmp_path / "assets"
            workers = worker_env(redis_url, namespace, assets, EMP_GPU_MODE="mock", **env)
            with worker_process(workers, "--connector", "simulation", "--worker-id", "w-t") as w:
                await until_registered(queue, "w-t", w)
                async with httpx.AsyncClient(base_url=url) as http:
                    submitted = await http.post(
                        "/api/jobs",
                        json={"service_required": "simulation", "webhook": hook.url + "/hook",
                              "payload": {"steps": 2, "step_delay_s": 0.01,
                                          "image": {"width": 8, "height": 8}}},
                        headers={"Authorization": f"Bearer {key.secret}",
                                 "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
                    )  # fmt: skip
                assert submitted.status_code == 201, submitted.text
                await collector.wait_for(SPANS, timeout_s=60)

    job_id = submitted.json()["id"]
    spans = {name: collector.named(name)[0] for name in SPANS}
    assert {span.trace_id for span in collector.spans} == {TRACE_ID}
    submit = spans["POST /api/jobs"]
    assert submit.service == "emp-api"
    assert submit.parent_span_id == CALLER_SPAN
    for name in ("job.queue_wait", "job.claim", "job.run", "job.complete"):
        assert spans[name].service == "emp-worker", name
        assert spans[name].parent_span_id == submit.span_id, name
        assert spans[name].attributes["emp.job_id"] == job_id, name
    assert spans["job.upload"].parent_span_id == spans["job.run"].span_id
    deliver = spans["webhook.deliver"]
    assert (deliver.service, deliver.parent_span_id) == ("emp-api", submit.span_id)
    assert spans["job.claim"].end_ns <= spans["job.run"].start_ns
    assert spans["job.run"].end_ns <= spans["job.complete"].end_ns
    assert deliver.start_ns >= spans["job.run"].end_ns


@pytest.mark.timeout(120)
async def test_a_connectors_calls_to_its_service_are_client_spans_of_the_run(
    redis_url: str, redis_client: Redis, namespace: str, tmp_path: Path
) -> None:
    collector, ollama = OtlpReceiver(), FakeOllama()
    queue = JobQueue(redis_client, namespace=namespace)
    async with collector.running(), ollama.running():
        env = worker_env(
            redis_url, namespace, tmp_path, EMP_GPU_MODE="mock", EMP_OLLAMA_URL=ollama.url,
            **tracing_env(collector),
        )  # fmt: skip
        with worker_process(env, "--connector", "ollama", "--worker-id", "w-o") as w:
            await until_registered(queue, "w-o", w)
            job = await queue.submit(
                JobSpec(
                    service_required="ollama",
                    payload={"operation": "generate", "model": "llama3.2:1b", "prompt": "hi"},
                    traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                )
            )
            await collector.wait_for({"job.run", "job.complete"}, timeout_s=60)

    assert (await queue.get(job.id)).status == "completed"
    [run] = collector.named("job.run")
    assert (run.trace_id, run.parent_span_id) == (TRACE_ID, CALLER_SPAN)
    calls = [span for span in collector.spans if span.parent_span_id == run.span_id]
    assert calls, f"no span inside the run: {[s.name for s in collector.spans]}"
    assert all(span.kind == SPAN_KIND_CLIENT for span in calls)
    # httpx's instrumentation names the old HTTP conventions' attributes by default.
    [generate] = [s for s in calls if str(s.attributes["http.url"]).endswith("/api/generate")]
    assert (generate.attributes["http.method"], generate.attributes["http.status_code"]) == (
        "POST",
        200,
    )
