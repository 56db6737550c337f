"""``openai`` responses: ``POST /responses`` in background mode, polled until it ends.

Background mode keeps a long generation alive on the service side even when a connection
drops, and gives an id to cancel it by. Terminal statuses:

* ``completed`` → the result (text, images from the ``image_generation`` tool stored as
  assets); a refusal in the output is a job fault.
* ``failed`` → service fault for the service's own codes (``server_error``,
  ``rate_limit_exceeded``, ``vector_store_timeout``, or none), job fault for the rest
  (``invalid_prompt``, ``invalid_image``, ``image_content_policy_violation``...).
* ``incomplete`` → job fault for ``content_filter``; a result with ``incomplete_reason`` for
  ``max_output_tokens`` (the request's own limit, like chat's ``finish_reason: length``).
* ``cancelled`` by someone else → service fault.

When the job is cancelled, or polling fails for good, the remote response is cancelled too, so
the service stops spending on a job this worker no longer follows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from emp_queue.connectors.base import RunningJob, job_fault, service_fault
from emp_queue.connectors.openai_http import OpenAIHttp
from emp_queue.connectors.openai_images import decode_base64_image, image_content_type
from emp_queue.connectors.outputs import place
from emp_queue.connectors.progress import ProgressGauge
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass

log = structlog.get_logger(__name__)

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})
SERVICE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "vector_store_timeout"})
MAX_POLL_FAILURES = 3
"""Consecutive failed polls tolerated (a blip must not lose a long generation)."""


async def run_responses(
    http: OpenAIHttp,
    job: RunningJob,
    body: dict[str, Any],
    *,
    poll_interval_s: float,
    cancel_timeout_s: float,
    inline_max_bytes: int,
) -> dict[str, Any]:
    gauge = ProgressGauge(job)
    created = await http.json("POST", "responses", {**body, "background": True})
    response_id = created.get("id") if isinstance(created, dict) else None
    if not isinstance(response_id, str):
        raise service_fault("the responses answer has no id", answer=str(created)[:500])
    log.info("openai_response_started", job_id=job.job.id, response_id=response_id)
    await gauge.report(0.0, str(created.get("status") or "queued"))
    try:
        final = await _poll(http, created, gauge, poll_interval_s)
    except (asyncio.CancelledError, JobFailedError):
        await _cancel(http, response_id, cancel_timeout_s)
        raise
    return await _result(job, final, gauge, inline_max_bytes)


async def _poll(
    http: OpenAIHttp, response: dict[str, Any], gauge: ProgressGauge, interval_s: float
) -> dict[str, Any]:
    shown = response.get("status")
    failures = 0
    while response.get("status") not in TERMINAL_STATUSES:
        await asyncio.sleep(interval_s)
        try:
            polled = await http.json("GET", f"responses/{response['id']}")
        except JobFailedError as error:
            failures += 1
            if error.failure_class != FailureClass.SERVICE_FAULT:
                # The job was accepted: losing track of its response is never the job's fault.
                raise service_fault(f"polling response {response['id']} failed: {error}") from error
            if failures > MAX_POLL_FAILURES:
                raise
            log.warning("openai_response_poll_failed", response_id=response["id"], error=str(error))
            continue
        failures = 0
        response = polled if isinstance(polled, dict) else response
        if response.get("status") != shown:
            shown = response.get("status")
            await gauge.note(str(shown))
    return response


async def _cancel(http: OpenAIHttp, response_id: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await http.json("POST", f"responses/{response_id}/cancel")
        log.info("openai_response_cancelled", response_id=response_id)
    except (TimeoutError, JobFailedError) as error:
        # The job is already ending; the service will finish the response on its own.
        log.warning("openai_response_cancel_failed", response_id=response_id, error=str(error))


def _failure(response: dict[str, Any]) -> JobFailedError | None:
    status = response.get("status")
    if status == "failed":
        error = response.get("error") or {}
        code = error.get("code")
        message = f"the response failed ({code}): {error.get('message')}"
        if code is None or code in SERVICE_ERROR_CODES:
            return service_fault(message, code=code)
        return job_fault(message, code=code)
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        if reason == "content_filter":
            return job_fault("the response was stopped by the content filter", reason=reason)
    if status == "cancelled":
        return service_fault(f"response {response.get('id')} was cancelled on the service side")
    return None


async def _result(
    job: RunningJob, response: dict[str, Any], gauge: ProgressGauge, inline_max_bytes: int
) -> dict[str, Any]:
    if (failure := _failure(response)) is not None:
        raise failure
    texts: list[str] = []
    outputs: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        if item.get("type") == "image_generation_call" and item.get("result"):
            image = decode_base64_image(item["result"], f"image_generation_call {item.get('id')}")
            content_type = image_content_type(image, item.get("output_format"))
            outputs.append((await job.store(image, content_type=content_type)).as_result())
        for part in (item.get("content") or []) if item.get("type") == "message" else []:
            if part.get("type") == "refusal":
                raise job_fault(f"the model refused: {part.get('refusal')}")
            if part.get("type") == "output_text":
                texts.append(str(part.get("text") or ""))
    await gauge.done(str(response.get("status")))
    result: dict[str, Any] = {
        "id": response.get("id"),
        "model": response.get("model"),
        "status": response.get("status"),
        "outputs": outputs,
        "usage": response.get("usage"),
    }
    if response.get("status") == "incomplete":
        result["incomplete_reason"] = (response.get("incomplete_details") or {}).get("reason")
    await place(result, "text", "".join(texts), job, max_bytes=inline_max_bytes)
    return result
