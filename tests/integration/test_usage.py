"""Usage accounting: every attempt that ends by complete or fail is added to its hour."""

from __future__ import annotations

import asyncio
import time

import pytest

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.usage import Granularity
from emp_queue.errors import InvalidQueryError
from emp_queue.models import FailureClass, JobError

GPU_WORKER = WorkerCapabilities(services=["sim"], hardware={"gpu_count": 2}, pool="fast")


async def test_attempts_add_up_per_customer_service_and_pool(job_queue: JobQueue) -> None:
    await job_queue.register_worker("gpu", GPU_WORKER)
    await job_queue.register_worker("cpu", WorkerCapabilities(services=["other"]))
    await job_queue.submit_many(
        [
            JobSpec(service_required="sim", customer_id="acme"),
            JobSpec(service_required="sim", customer_id="acme"),
            JobSpec(service_required="other"),
        ]
    )
    first, second = await job_queue.claim("gpu", count=2)
    (third,) = await job_queue.claim("cpu")
    await asyncio.sleep(0.02)
    await job_queue.complete("gpu", first.job.id, first.attempt, {"text": "x" * 100})
    error = JobError(failure_class=FailureClass.JOB_FAULT, message="bad input")
    await job_queue.fail("gpu", second.job.id, second.attempt, error)
    await job_queue.complete("cpu", third.job.id, third.attempt, None)
    now = int(time.time() * 1000)
    rows = await job_queue.usage(from_ms=now - 3_600_000, to_ms=now + 1)
    by_key = {(r.customer_id, r.service, r.pool): r for r in rows}
    acme = by_key["acme", "sim", "fast"]
    assert (acme.jobs, acme.completed) == (2, 1)
    assert acme.run_s >= 0.04  # two attempts of at least 20 ms each
    assert acme.gpu_s == pytest.approx(2 * acme.run_s)
    assert acme.output_bytes == len('{"text":"' + "x" * 100 + '"}')
    anonymous = by_key[None, "other", None]
    assert (anonymous.jobs, anonymous.gpu_s, anonymous.output_bytes) == (1, 0, 4)
    only_acme = await job_queue.usage(
        from_ms=now - 3_600_000, to_ms=now + 1, customer_id="acme", granularity=Granularity.DAY
    )
    assert [(r.customer_id, r.jobs) for r in only_acme] == [("acme", 2)]
    assert only_acme[0].start_ms % 86_400_000 == 0
    hour_key = job_queue.keys.usage_hour(now // 3_600_000 * 3_600_000)
    assert 0 < await job_queue.redis.ttl(hour_key) <= 36 * 86_400  # bounded retention


async def test_a_query_out_of_range_is_refused(job_queue: JobQueue) -> None:
    with pytest.raises(InvalidQueryError, match="must be after"):
        await job_queue.usage(from_ms=10, to_ms=5)
    with pytest.raises(InvalidQueryError, match="at most 37 days"):
        await job_queue.usage(from_ms=0, to_ms=100 * 86_400_000)


async def test_tokens_and_model_load_time_come_from_the_connectors_usage_report(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("llm", WorkerCapabilities(services=["llm"]))
    await job_queue.submit_many(
        [JobSpec(service_required="llm", customer_id="acme") for _ in range(4)]
    )
    reports = [
        {"text": "hi", "usage": {"prompt_tokens": 11, "completion_tokens": 7}},  # OpenAI chat
        # Ollama: counts and durations (ms) as ollama_stream.py reports them
        {"usage": {"prompt_eval_count": 5, "eval_count": 3, "load_duration_ms": 1500.4}},
        {"usage": {"promptTokenCount": 2, "candidatesTokenCount": 1}},  # Gemini
        {"text": "no usage reported", "usage": None},
    ]
    for claimed, report in zip(await job_queue.claim("llm", count=4), reports, strict=True):
        await job_queue.complete("llm", claimed.job.id, claimed.attempt, report)
    now = int(time.time() * 1000)
    [row] = await job_queue.usage(from_ms=now - 3_600_000, to_ms=now + 1, service="llm")
    assert (row.completed, row.tokens_in, row.tokens_out) == (4, 18, 11)
    assert row.model_load_s == pytest.approx(1.5)
