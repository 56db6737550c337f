"""The comfyui connector's one shared WebSocket: drops, reconnects, other clients, cancel, auth."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emp_queue.connectors.base import ServiceUnavailableError
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.connectors.comfyui_payload import prompt_id_for
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.fakes.comfyui import FakeComfyUI
from tests.integration.connectors.test_comfyui import (
    STEP_DELAY_S,
    connect,  # noqa: F401 (a fixture)
    running,
    sampling,
    txt2img,
    until,
)


def sockets_opened(fake: FakeComfyUI) -> int:
    return len([r for r in fake.request_log if r.method == "WS"])


async def test_two_concurrent_jobs_share_one_socket(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    jobs = [running({"workflow": txt2img(steps=5, seed=s)}, storage) for s in (1, 2)]

    results = await asyncio.gather(*(connector.run(job) for job in jobs))

    assert sockets_opened(fake_comfyui) == 1
    assert fake_comfyui.connected_clients == [connector.client_id]
    assert [r["prompt_id"] for r in results] == [prompt_id_for(j.job.id, 1) for j in jobs]
    assert results[0]["outputs"][0]["sha256"] != results[1]["outputs"][0]["sha256"]
    for job in jobs:
        fractions = [f for f, _ in job.reports if f is not None]
        assert fractions == sorted(fractions)
        assert fractions[-1] == 1.0


async def test_other_clients_messages_and_previews_do_not_disturb_a_job(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    async with httpx.AsyncClient(base_url=fake_comfyui.url) as http:
        # A prompt without a client id broadcasts its progress, previews and interruption.
        foreign = await http.post("/prompt", json={"prompt": txt2img(steps=2000, seed=5)})
        foreign_id = foreign.json()["prompt_id"]
        await http.post("/prompt", json={"prompt": txt2img(seed=6), "client_id": "other"})
        job = running({"workflow": txt2img(steps=5)}, storage)
        task = asyncio.create_task(connector.run(job))
        await asyncio.sleep(0.2)  # our prompt waits while the foreign one samples
        assert not task.done()
        await http.post("/interrupt", json={"prompt_id": foreign_id})

        result = await task

    assert fake_comfyui.executed_prompt_ids[0] == foreign_id
    assert fake_comfyui.executed_prompt_ids[-1] == result["prompt_id"]
    assert len(result["outputs"]) == 1
    fractions = [f for f, _ in job.reports if f is not None]
    assert fractions == sorted(fractions)


async def test_a_dropped_socket_reconnects_and_the_job_completes(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    job = running({"workflow": txt2img(steps=40)}, storage)
    task = asyncio.create_task(connector.run(job))
    await until(sampling(job))

    fake_comfyui.drop_sockets()
    reported = len(job.reports)
    result = await task

    assert sockets_opened(fake_comfyui) == 2
    assert fake_comfyui.connected_clients == [connector.client_id]
    assert result["outputs"][0]["node"] == "9"
    assert [m for _, m in job.reports[reported:] if m and "step" in m], "progress resumed"


async def test_a_prompt_that_finished_while_the_socket_was_down_completes_from_history(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect(reconnect_backoff_max_s=0.05)
    job = running({"workflow": txt2img(steps=10)}, storage)
    task = asyncio.create_task(connector.run(job))
    await until(sampling(job))
    prompt_id = prompt_id_for(job.job.id, 1)

    fake_comfyui.refuse_sockets = True
    fake_comfyui.drop_sockets()
    await until(lambda: prompt_id in fake_comfyui.history)
    assert not task.done(), "the success message went to a closed socket"
    fake_comfyui.refuse_sockets = False
    result = await task

    assert sockets_opened(fake_comfyui) > 2, "refused reconnects were retried"
    assert result["outputs"][0]["node"] == "9"


async def test_cancel_interrupts_our_running_prompt(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    job = running({"workflow": txt2img(steps=2000)}, storage)
    task = asyncio.create_task(connector.run(job))
    await until(sampling(job))

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    prompt_id = prompt_id_for(job.job.id, 1)
    assert fake_comfyui.interrupt_requests == [prompt_id]
    await until(lambda: prompt_id in fake_comfyui.history)
    assert fake_comfyui.history[prompt_id]["status"]["status_str"] == "error"


async def test_cancel_of_a_queued_prompt_removes_it_from_the_queue(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    first = running({"workflow": txt2img(steps=2000)}, storage)
    queued = running({"workflow": txt2img(steps=2000, seed=2)}, storage)
    first_task = asyncio.create_task(connector.run(first))
    await until(sampling(first))
    queued_task = asyncio.create_task(connector.run(queued))
    await until(lambda: bool(queued.reports))

    queued_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued_task

    queue = fake_comfyui.queue()
    assert queue["queue_pending"] == []
    assert [item[1] for item in queue["queue_running"]] == [prompt_id_for(first.job.id, 1)]
    first_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first_task
    assert prompt_id_for(queued.job.id, 1) not in fake_comfyui.executed_prompt_ids


async def test_closing_the_connector_fails_running_jobs_as_service_faults(
    fake_comfyui: FakeComfyUI,
    storage: AssetStorage,
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = ComfyUIConnector(ComfyUIConfig(url=fake_comfyui.url))
    await connector.start()
    job = running({"workflow": txt2img(steps=2000)}, storage)
    task = asyncio.create_task(connector.run(job))
    await until(sampling(job))

    await connector.close()

    with pytest.raises(JobFailedError, match="closed") as failure:
        await task
    assert failure.value.failure_class == FailureClass.SERVICE_FAULT


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("settings", "header"),
    [
        ({"username": "emp", "password": "s3cret"}, basic("emp", "s3cret")),
        ({"token": "tok-123"}, "Bearer tok-123"),
    ],
)
async def test_credentials_go_on_every_request_and_the_socket_handshake(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],  # noqa: F811
    storage: AssetStorage,
    settings: dict[str, str],
    header: str,
) -> None:
    fake_comfyui.required_authorization = header
    connector = await connect(**settings)

    assert await connector.run(running({"workflow": txt2img()}, storage))
    assert (await connector.discover()).models.installed

    assert {r.method for r in fake_comfyui.request_log} >= {"GET", "POST", "WS"}
    assert {r.authorization for r in fake_comfyui.request_log} == {header}


@pytest.mark.parametrize("settings", [{}, {"token": "wrong"}])
async def test_missing_or_wrong_credentials_fail_the_start(
    fake_comfyui: FakeComfyUI, settings: dict[str, str]
) -> None:
    fake_comfyui.required_authorization = "Bearer right"
    connector = ComfyUIConnector(
        ComfyUIConfig.model_validate({"url": fake_comfyui.url, **settings})
    )

    with pytest.raises(ServiceUnavailableError, match="credentials") as failure:
        await connector.start()
    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    await connector.close()


async def test_a_socket_refused_at_start_is_service_unavailable(
    fake_comfyui: FakeComfyUI,
) -> None:
    fake_comfyui.refuse_sockets = True
    connector = ComfyUIConnector(ComfyUIConfig(url=fake_comfyui.url))

    with pytest.raises(ServiceUnavailableError, match="WebSocket"):
        await connector.start()
    await connector.close()
