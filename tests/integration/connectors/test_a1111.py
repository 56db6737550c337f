"""The a1111 connector against the fake AUTOMATIC1111: the contract, progress, cancel, models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from emp_queue.connectors.a1111 import A1111Config, A1111Connector
from emp_queue.errors import JobFailedError
from emp_queue.media import png_size
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import (
    ConnectorContract,
    RecordingJob,
    closed_port,
    make_job,
)
from emp_queue.testing.fakes.a1111 import FakeA1111

SDXL = "sd_xl_base_1.0.safetensors"


class TestA1111Contract(ConnectorContract):
    @pytest_asyncio.fixture
    async def connector(self, fake_a1111: FakeA1111) -> AsyncIterator[A1111Connector]:
        fake_a1111.step_delay_s = 0.01
        connector = A1111Connector(A1111Config(url=fake_a1111.url, progress_interval_s=0.02))
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return {"prompt": "a fox", "steps": 4, "width": 16, "height": 16}

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {"operation": "img2img", "prompt": "no init image"}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return {"prompt": "slow", "steps": 1000, "width": 8, "height": 8}

    @pytest.fixture
    def unreachable(self) -> A1111Connector:
        return A1111Connector(A1111Config(url=f"http://127.0.0.1:{closed_port()}"))


@pytest_asyncio.fixture
async def connector(fake_a1111: FakeA1111) -> AsyncIterator[A1111Connector]:
    connector = A1111Connector(A1111Config(url=fake_a1111.url, progress_interval_s=0.02))
    await connector.start()
    yield connector
    await connector.close()


@dataclass
class MovingJob(RecordingJob):
    """Sets ``moving`` at the first progress above zero: the remote work is under way."""

    moving: asyncio.Event = field(default_factory=asyncio.Event)

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        await super().progress(fraction, message)
        if fraction:
            self.moving.set()


def running(payload: dict[str, Any], storage: AssetStorage) -> MovingJob:
    return MovingJob(make_job("a1111", payload), storage)


async def test_images_are_stored_and_info_is_parsed(
    connector: A1111Connector, storage: AssetStorage, tmp_path: Path
) -> None:
    payload = {"prompt": "a fox", "steps": 2, "width": 24, "height": 16, "batch_size": 2, "seed": 5}

    result = await connector.run(job := running(payload, storage))

    assert len(result["outputs"]) == 2
    assert [a.content_type for a in job.assets] == ["image/png", "image/png"]
    first = result["outputs"][0]
    stored = tmp_path / "assets" / first["bucket"] / first["key"]
    assert png_size(stored.read_bytes()) == (24, 16)
    assert result["info"]["all_seeds"] == [5, 6], "info is a JSON string in A1111: parsed"
    assert result["parameters"]["prompt"] == "a fox"
    assert result["operation"] == "txt2img"


async def test_progress_is_polled_while_generating_and_only_goes_up(
    fake_a1111: FakeA1111, connector: A1111Connector, storage: AssetStorage
) -> None:
    fake_a1111.step_delay_s = 0.01

    await connector.run(job := running({"prompt": "p", "steps": 30}, storage))

    fractions = [f for f, _ in job.reports if f is not None]
    between = [f for f in fractions if 0 < f < 1]
    assert fake_a1111.progress_polls >= 5
    assert len(between) >= 3, f"expected intermediate progress, got {fractions}"
    assert fractions == sorted(fractions)
    assert len(set(between)) == len(between), "no repeated reports of the same fraction"
    assert fractions[-1] == 1.0
    assert any(message and message.startswith("step ") for _, message in job.reports)


async def test_cancel_interrupts_the_generation(
    fake_a1111: FakeA1111, connector: A1111Connector, storage: AssetStorage
) -> None:
    fake_a1111.step_delay_s = 0.01
    job = running({"prompt": "long", "steps": 2000}, storage)
    task = asyncio.create_task(connector.run(job))
    async with asyncio.timeout(5):
        await job.moving.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert fake_a1111.interrupts == 1
    async with asyncio.timeout(2):  # the interrupted generation freed the fake's queue
        assert await connector.run(running({"prompt": "next", "steps": 1}, storage))
    assert fake_a1111.generations == 2


async def test_model_is_switched_once_and_reported_loaded(
    fake_a1111: FakeA1111, connector: A1111Connector, storage: AssetStorage
) -> None:
    first = await connector.run(running({"prompt": "a", "steps": 1, "model": SDXL}, storage))
    await connector.run(running({"prompt": "b", "steps": 1, "model": "sd_xl_base_1.0"}, storage))
    found = await connector.discover()

    assert fake_a1111.switches == [SDXL]
    assert first["info"]["sd_model_name"] == "sd_xl_base_1.0"
    assert found.models.loaded == [SDXL]
    assert SDXL in found.models.installed


async def test_concurrent_jobs_each_run_on_their_own_model(
    fake_a1111: FakeA1111, connector: A1111Connector, storage: AssetStorage
) -> None:
    fake_a1111.step_delay_s = 0.005
    models = ["v1-5-pruned-emaonly.safetensors", SDXL, "v1-5-pruned-emaonly.safetensors"]

    results = await asyncio.gather(
        *(connector.run(running({"prompt": m, "steps": 5, "model": m}, storage)) for m in models)
    )

    assert [r["info"]["sd_model_name"] + ".safetensors" for r in results] == models


async def test_unknown_model_is_a_job_fault_naming_the_installed_ones(
    fake_a1111: FakeA1111, connector: A1111Connector, storage: AssetStorage
) -> None:
    with pytest.raises(JobFailedError, match=SDXL) as failure:
        await connector.run(running({"prompt": "x", "model": "nope.safetensors"}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert fake_a1111.switches == []


async def test_out_of_memory_is_a_service_fault_with_a1111s_message(
    fake_a1111: FakeA1111, connector: A1111Connector, storage: AssetStorage
) -> None:
    fake_a1111.fail_next()

    with pytest.raises(JobFailedError, match="CUDA out of memory") as failure:
        await connector.run(running({"prompt": "x", "steps": 1}, storage))

    assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    assert failure.value.details["status"] == 500


async def test_img2img_parameters_do_not_carry_the_input_image(
    connector: A1111Connector, storage: AssetStorage
) -> None:
    init = "A" * 4000
    payload = {"operation": "img2img", "prompt": "x", "steps": 1, "init_images": [init]}

    result = await connector.run(running(payload, storage))

    assert result["operation"] == "img2img"
    assert init not in str(result)
    assert len(result["outputs"]) == 1


async def test_invalid_payload_is_a_job_fault(
    connector: A1111Connector, storage: AssetStorage
) -> None:
    with pytest.raises(JobFailedError, match="operation") as failure:
        await connector.run(running({"operation": "upscale"}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
