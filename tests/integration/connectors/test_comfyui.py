"""The comfyui connector against the fake ComfyUI: the contract, results, and failure classes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from emp_queue.connectors import comfyui_workflows as workflows
from emp_queue.connectors.base import ServiceUnavailableError
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.connectors.comfyui_payload import prompt_id_for
from emp_queue.errors import JobFailedError
from emp_queue.media import png_size, solid_png
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import (
    ConnectorContract,
    RecordingJob,
    closed_port,
    local_storage,
    make_job,
)
from emp_queue.testing.fakes.comfyui import FakeComfyUI

CHECKPOINT = "sd_xl_base_1.0.safetensors"
STEP_DELAY_S = 0.02


def txt2img(
    *, steps: int = 3, seed: int = 1, ckpt: str = CHECKPOINT, size: int = 32
) -> dict[str, Any]:
    """The API-format graph of ComfyUI's default text-to-image workflow."""
    return workflows.txt2img("a cat", checkpoint=ckpt, seed=seed, steps=steps, size=size)


def config_for(fake: FakeComfyUI, **overrides: Any) -> ComfyUIConfig:
    return ComfyUIConfig(url=fake.url, reconnect_backoff_s=0.01, **overrides)


@pytest_asyncio.fixture
async def connect(
    fake_comfyui: FakeComfyUI,
) -> AsyncIterator[Callable[..., Any]]:
    """Start a connector on the fake (settings as keyword arguments); closed after the test."""
    started: list[ComfyUIConnector] = []

    async def start(**overrides: Any) -> ComfyUIConnector:
        connector = ComfyUIConnector(config_for(fake_comfyui, **overrides))
        await connector.start()
        started.append(connector)
        return connector

    yield start
    for connector in started:
        await connector.close()


def running(payload: dict[str, Any], storage: AssetStorage, attempt: int = 1) -> RecordingJob:
    return RecordingJob(make_job("comfyui", payload), storage, attempt=attempt)


async def until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait for a condition on the fake's or a job's state, which signal no event to wait on."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def sampling(job: RecordingJob) -> Callable[[], bool]:
    """True once the job reported its sampler running (the prompt runs in ComfyUI)."""
    return lambda: any(m and m.startswith("KSampler") for _, m in job.reports)


class TestComfyUIContract(ConnectorContract):
    @pytest_asyncio.fixture
    async def connector(  # type: ignore[override] # pytest injects the fake by name
        self, fake_comfyui: FakeComfyUI
    ) -> AsyncIterator[ComfyUIConnector]:
        fake_comfyui.step_delay_s = STEP_DELAY_S
        connector = ComfyUIConnector(config_for(fake_comfyui))
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return {"workflow": txt2img(steps=3)}

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {"workflow": txt2img(ckpt="missing.safetensors")}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return {"workflow": txt2img(steps=2000, seed=7)}

    @pytest.fixture
    def unreachable(self) -> ComfyUIConnector:
        return ComfyUIConnector(ComfyUIConfig(url=f"http://127.0.0.1:{closed_port()}"))


async def test_outputs_are_stored_and_named_by_node(
    connect: Callable[..., Any], storage: AssetStorage, tmp_path: Path
) -> None:
    connector = await connect()
    job = running({"prompt": txt2img(size=48)}, storage, attempt=2)

    result = await connector.run(job)

    assert result["prompt_id"] == prompt_id_for(job.job.id, 2)
    (output,) = result["outputs"]
    assert output["node"] == "9"
    assert output["kind"] == "images"
    assert output["content_type"] == "image/png"
    stored = (tmp_path / "assets" / output["bucket"] / output["key"]).read_bytes()
    assert png_size(stored) == (48, 48)
    assert job.reports[-1] == (1.0, "done")


def test_prompt_ids_are_stable_per_attempt() -> None:
    assert prompt_id_for("job-1", 1) == prompt_id_for("job-1", 1)
    assert prompt_id_for("job-1", 1) != prompt_id_for("job-1", 2)
    assert prompt_id_for("job-1", 1) != prompt_id_for("job-2", 1)


async def test_discovery_lists_model_files_version_and_gpu_memory(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any]
) -> None:
    fake_comfyui.models["checkpoints"].append("flux1-dev.safetensors")
    fake_comfyui.files[("input", "", "in.png")] = b"png"
    connector = await connect()

    found = await connector.discover()

    assert set(found.models.installed) == {
        "sd_xl_base_1.0.safetensors",
        "v1-5-pruned-emaonly.safetensors",
        "flux1-dev.safetensors",
        "detail-tweaker.safetensors",
        "sdxl_vae.safetensors",
    }
    assert found.details["models_by_input"]["LoraLoader.lora_name"] == [
        "detail-tweaker.safetensors"
    ]
    assert found.version == "0.3.43"
    assert found.gpu_memory_gb == 24.0


async def test_the_last_jobs_models_are_reported_loaded(
    connect: Callable[..., Any], storage: AssetStorage
) -> None:
    connector = await connect()
    assert (await connector.discover()).models.loaded == []  # nothing ran: nothing cached
    job = running({"prompt": txt2img()}, storage)
    job.job = dataclasses.replace(job.job, requirements={"models": [CHECKPOINT]})

    await connector.run(job)

    assert (await connector.discover()).models.loaded == [CHECKPOINT]


@pytest.mark.parametrize(
    ("workflow", "error_type", "node"),
    [
        (txt2img(ckpt="missing.safetensors"), "prompt_outputs_failed_validation", "4"),
        ({"1": {"class_type": "NoSuchNode", "inputs": {}}}, "missing_node_type", None),
        (
            {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}}},
            "prompt_no_outputs",
            None,
        ),
    ],
)
async def test_validation_errors_are_job_faults_with_node_errors(
    connect: Callable[..., Any],
    storage: AssetStorage,
    workflow: dict[str, Any],
    error_type: str,
    node: str | None,
) -> None:
    connector = await connect()
    with pytest.raises(JobFailedError) as failure:
        await connector.run(running({"workflow": workflow}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert failure.value.details["error_type"] == error_type
    node_errors: Any = failure.value.details["node_errors"]
    if node is not None:
        assert node_errors[node]["errors"][0]["type"] == "value_not_in_list"
        assert "missing.safetensors" in str(failure.value)
    else:
        assert node_errors == {}


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"workflow": {}},
        {"workflow": txt2img(), "prompt": txt2img()},
        {"workflow": txt2img(), "inputs": [{"name": "a.png", "data_base64": "%%%"}]},
        {"workflow": txt2img(), "inputs": [{"name": "../a.png", "data_base64": ""}]},
    ],
)
async def test_malformed_payloads_are_job_faults(
    connect: Callable[..., Any], storage: AssetStorage, payload: dict[str, Any]
) -> None:
    connector = await connect()
    with pytest.raises(JobFailedError) as failure:
        await connector.run(running(payload, storage))
    assert failure.value.failure_class == FailureClass.JOB_FAULT


@pytest.mark.parametrize(
    ("exception_type", "message", "failure_class"),
    [
        (
            "torch.OutOfMemoryError",
            "Allocation on device 0 would exceed allowed memory. (out of memory)",
            FailureClass.SERVICE_FAULT,
        ),
        ("RuntimeError", "CUDA error: an illegal memory access", FailureClass.SERVICE_FAULT),
        (
            "RuntimeError",
            "Given groups=1, weight of size [320, 4, 3, 3], expected input to have 4 channels",
            FailureClass.JOB_FAULT,
        ),
        ("ValueError", "bad prompt weight", FailureClass.JOB_FAULT),
    ],
)
async def test_execution_errors_are_classified_by_their_exception(
    fake_comfyui: FakeComfyUI,
    connect: Callable[..., Any],
    storage: AssetStorage,
    exception_type: str,
    message: str,
    failure_class: FailureClass,
) -> None:
    fake_comfyui.fail_next("VAEDecode", message, exception_type)
    connector = await connect()

    with pytest.raises(JobFailedError) as failure:
        await connector.run(running({"workflow": txt2img()}, storage))

    assert failure.value.failure_class == failure_class
    assert message in str(failure.value)
    assert failure.value.details["node_id"] == "8"
    assert failure.value.details["node_type"] == "VAEDecode"


async def test_an_interrupt_we_did_not_send_is_a_service_fault(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    job = running({"workflow": txt2img(steps=2000)}, storage)
    task = asyncio.create_task(connector.run(job))
    await until(sampling(job))

    async with httpx.AsyncClient(base_url=fake_comfyui.url) as http:
        await http.post("/interrupt", json={})

    with pytest.raises(JobFailedError, match="interrupted") as failure:
        await task
    assert failure.value.failure_class == FailureClass.SERVICE_FAULT


async def test_a_restart_losing_the_prompts_is_a_service_fault_never_a_success(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect()
    first = running({"workflow": txt2img(steps=2000)}, storage)
    queued = running({"workflow": txt2img(steps=2000, seed=2)}, storage)
    tasks = [asyncio.create_task(connector.run(job)) for job in (first, queued)]
    await until(sampling(first))
    await until(lambda: bool(queued.reports))

    await fake_comfyui.restart()

    for task in tasks:
        with pytest.raises(JobFailedError, match=r"lost the prompt \(restart\?\)") as failure:
            await task
        assert failure.value.failure_class == FailureClass.SERVICE_FAULT
    assert all(f != 1.0 for job in (first, queued) for f, _ in job.reports)


async def test_polling_a_running_prompt_keeps_waiting(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    fake_comfyui.step_delay_s = STEP_DELAY_S
    connector = await connect(poll_interval_s=0.01)
    job = running({"workflow": txt2img(steps=25)}, storage)
    task = asyncio.create_task(connector.run(job))
    await until(sampling(job))
    prompt_id = prompt_id_for(job.job.id, 1)
    async with httpx.AsyncClient(base_url=fake_comfyui.url) as http:
        assert (await http.get(f"/history/{prompt_id}")).json() == {}

    result = await task

    polls = [r for r in fake_comfyui.request_log if r.path == "/queue"]
    assert len(polls) >= 5, "the job asked where its prompt was while it ran"
    (output,) = result["outputs"]
    assert output["node"] == "9"


async def test_empty_history_right_after_success_is_waited_out(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    fake_comfyui.history_delay_s = 0.3
    connector = await connect()

    result = await connector.run(running({"workflow": txt2img()}, storage))

    history_path = f"/history/{result['prompt_id']}"
    assert len([r for r in fake_comfyui.request_log if r.path == history_path]) >= 2
    (output,) = result["outputs"]
    assert output["node"] == "9"


async def test_old_versions_without_execution_success_still_complete(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    fake_comfyui.without_success_message = True
    fake_comfyui.history_delay_s = 0.05
    connector = await connect()

    async with asyncio.timeout(5):  # well before the 30 s safety-net poll
        result = await connector.run(running({"workflow": txt2img()}, storage))

    (output,) = result["outputs"]
    assert output["node"] == "9"


async def test_history_that_never_comes_is_a_service_fault(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    fake_comfyui.history_delay_s = 5
    connector = await connect(history_wait_s=0.2)

    with pytest.raises(JobFailedError, match="no entry") as failure:
        await connector.run(running({"workflow": txt2img()}, storage))
    assert failure.value.failure_class == FailureClass.SERVICE_FAULT


def submitted_prompts(fake: FakeComfyUI) -> list[dict[str, Any]]:
    """The graphs ComfyUI ran, as its history holds them."""
    return [entry["prompt"][2] for entry in fake.history.values()]


async def test_input_files_are_uploaded_before_the_prompt(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    inline = solid_png(8, 8, (255, 0, 0))
    remote = solid_png(4, 4, (0, 0, 255))
    fake_comfyui.files[("output", "", "elsewhere.png")] = remote
    source = f"{fake_comfyui.url}/view?filename=elsewhere.png&type=output"
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "inline.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "fetched.png"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    payload = {
        "workflow": workflow,
        "inputs": [
            {"name": "inline.png", "data_base64": base64.b64encode(inline).decode()},
            {"name": "fetched.png", "url": source},
        ],
        "output_types": ["temp"],
    }
    connector = await connect()

    result = await connector.run(running(payload, storage))

    [prompt] = submitted_prompts(fake_comfyui)
    uploaded = {name: data for (kind, _, name), data in fake_comfyui.files.items()
                if kind == "input"}  # fmt: skip
    assert uploaded[prompt["1"]["inputs"]["image"]] == inline
    assert uploaded[prompt["2"]["inputs"]["image"]] == remote
    assert prompt["1"]["inputs"]["image"].endswith("-inline.png")
    assert sorted(o["node"] for o in result["outputs"]) == ["3", "4"]


async def test_concurrent_jobs_sending_files_of_one_name_each_get_their_own(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sub/in.png [input]"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    files = [base64.b64encode(solid_png(8, 8, colour)).decode() for colour in colours]
    payloads = [
        {
            "workflow": workflow,
            "inputs": [{"name": "in.png", "subfolder": "sub", "data_base64": data}],
            "output_types": ["temp"],
        }
        for data in files
    ]
    connector = await connect()

    await asyncio.gather(*(connector.run(running(p, storage)) for p in payloads))

    seen = set()
    for prompt in submitted_prompts(fake_comfyui):
        reference = prompt["1"]["inputs"]["image"]
        path, _, annotation = reference.partition(" [")
        assert annotation == "input]"
        subfolder, _, name = path.partition("/")
        assert subfolder == "sub"
        seen.add(fake_comfyui.files[("input", "sub", name)])
    assert seen == {solid_png(8, 8, colour) for colour in colours}
    assert workflow["1"]["inputs"]["image"] == "sub/in.png [input]", "the payload is not changed"


async def test_a_missing_input_url_is_a_job_fault(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any], storage: AssetStorage
) -> None:
    payload = {
        "workflow": txt2img(),
        "inputs": [{"name": "x.png", "url": f"{fake_comfyui.url}/view?filename=none.png"}],
    }
    connector = await connect()
    with pytest.raises(JobFailedError, match="404") as failure:
        await connector.run(running(payload, storage))
    assert failure.value.failure_class == FailureClass.JOB_FAULT


async def test_start_fails_when_comfyui_is_unreachable() -> None:
    connector = ComfyUIConnector(ComfyUIConfig(url=f"http://127.0.0.1:{closed_port()}"))
    with pytest.raises(ServiceUnavailableError, match="not available"):
        await connector.start()
    await connector.close()
    with pytest.raises(ServiceUnavailableError, match="not started"):
        await connector.run(running({"workflow": txt2img()}, local_storage(Path("/nonexistent"))))


async def test_progress_names_the_running_node_and_every_node_start_is_reported(
    connect: Callable[..., Any], storage: AssetStorage
) -> None:
    # The fake sends progress_state (node running) before `executing`, as ComfyUI 0.27 does.
    connector = await connect()
    job = running({"workflow": txt2img(steps=3)}, storage)

    await connector.run(job)

    starts = [message for fraction, message in job.reports if fraction is None and message]
    started = [message.split(" (node")[0] for message in starts]
    assert sorted(started) == sorted(
        ["CheckpointLoaderSimple", "EmptyLatentImage", "CLIPTextEncode", "CLIPTextEncode",
         "KSampler", "VAEDecode", "SaveImage"]
    )  # fmt: skip
    sampling = [m for f, m in job.reports if f is not None and m and "step" in m]
    assert sampling
    assert all(m.startswith("KSampler (node") for m in sampling)


async def test_a_missing_custom_node_is_a_job_fault_naming_it(
    connect: Callable[..., Any], storage: AssetStorage
) -> None:
    connector = await connect()
    workflow = {**txt2img(), "99": {"class_type": "IPAdapterApply", "inputs": {}}}
    with pytest.raises(JobFailedError) as failure:
        await connector.run(running({"workflow": workflow}, storage))

    assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert "IPAdapterApply" in str(failure.value)


async def test_discovery_on_a_cpu_comfyui_reports_no_gpu_memory(
    fake_comfyui: FakeComfyUI, connect: Callable[..., Any]
) -> None:
    fake_comfyui.device = "cpu"
    connector = await connect()

    found = await connector.discover()

    assert found.gpu_memory_gb is None
