"""The testing kit's fixtures as a user's project gets them (the plugin loads by entry point)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from emp_queue.core.queue import JobQueue
from emp_queue.errors import ConfigurationError
from emp_queue.models import JobSpec, JobStatus
from emp_queue.testing.api_client import ApiClient
from emp_queue.worker.context import JobContext
from tests.integration.testing_kit.user_test_comfyui import (
    test_a_comfyui_job_submitted_through_the_api_stores_its_image as user_comfyui_test,
)

test_the_user_style_comfyui_test_passes_here_too = user_comfyui_test


async def test_worker_runs_a_plain_handler(job_queue: JobQueue, worker: Any) -> None:
    async def handler(context: JobContext) -> dict[str, Any]:
        await context.report_progress(0.5, "halfway")
        return {"echo": context.job.payload["text"]}

    submitted = await job_queue.submit(JobSpec(service_required="echo", payload={"text": "hi"}))
    async with worker(handler, service="echo"):
        async with asyncio.timeout(10):
            while (job := await job_queue.get(submitted.id)).status != JobStatus.COMPLETED:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    assert job.result == {"echo": "hi"}


async def test_a_handler_worker_needs_its_service(worker: Any) -> None:
    async def handler(context: JobContext) -> None:
        return None

    with pytest.raises(ConfigurationError, match="pass service="):
        async with worker(handler):
            pass


async def test_api_client_keys_have_their_roles(api_client: ApiClient) -> None:
    listed = await api_client.http.get("/api/workers", headers=api_client.as_admin)
    refused = await api_client.http.get("/api/workers", headers=api_client.as_client)
    assert listed.status_code == 200
    assert refused.status_code == 403
