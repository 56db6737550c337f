"""Files a customer uploaded (``POST /api/uploads``) as job inputs: a ComfyUI input's ``upload``,
a REST job's ``body_upload``, A1111's ``init_image_uploads`` and ``mask_upload`` (#14 item 7).
The worker reads them from the asset store, for jobs of the uploading customer only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from emp_queue.connectors.a1111 import A1111Config, A1111Connector
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.connectors.rest import RestConfig, RestSyncConnector
from emp_queue.errors import JobFailedError
from emp_queue.media import solid_png
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import RecordingJob, make_job
from emp_queue.testing.fakes.a1111 import FakeA1111
from emp_queue.testing.fakes.comfyui import FakeComfyUI
from emp_queue.testing.fakes.rest import FakeRest

IMAGE = solid_png(8, 8, (10, 200, 30))
WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


@pytest_asyncio.fixture
async def comfyui(fake_comfyui: FakeComfyUI) -> AsyncIterator[ComfyUIConnector]:
    connector = ComfyUIConnector(ComfyUIConfig(url=fake_comfyui.url, reconnect_backoff_s=0.01))
    await connector.start()
    yield connector
    await connector.close()


@pytest_asyncio.fixture
async def rest(fake_rest: FakeRest) -> AsyncIterator[RestSyncConnector]:
    connector = RestSyncConnector(RestConfig(base_url=fake_rest.url))
    await connector.start()
    yield connector
    await connector.close()


async def uploaded(storage: AssetStorage, data: bytes, content_type: str, name: str) -> str:
    """What ``POST /api/uploads`` stores for acme, and the ref it answers."""
    ref, _ = await storage.store_upload("acme", data, content_type=content_type, name=name)
    return str(ref)


def comfyui_job(ref: str, storage: AssetStorage, customer_id: str | None) -> RecordingJob:
    payload = {
        "workflow": WORKFLOW,
        "inputs": [{"name": "in.png", "upload": ref}],
        "output_types": ["temp"],
    }
    return RecordingJob(make_job("comfyui", payload, customer_id=customer_id), storage)


async def test_comfyui_runs_on_the_customers_uploaded_image(
    comfyui: ComfyUIConnector, fake_comfyui: FakeComfyUI, storage: AssetStorage
) -> None:
    ref = await uploaded(storage, IMAGE, "image/png", "in.png")

    result = await comfyui.run(comfyui_job(ref, storage, "acme"))

    [entry] = fake_comfyui.history.values()
    sent_as = entry["prompt"][2]["1"]["inputs"]["image"]
    assert fake_comfyui.files[("input", "", sent_as)] == IMAGE
    assert [output["node"] for output in result["outputs"]] == ["2"]


async def test_another_customers_upload_is_a_job_fault_and_never_reaches_the_service(
    comfyui: ComfyUIConnector, fake_comfyui: FakeComfyUI, storage: AssetStorage
) -> None:
    ref = await uploaded(storage, IMAGE, "image/png", "in.png")

    for customer in ("globex", None):
        with pytest.raises(JobFailedError, match="no upload") as failure:
            await comfyui.run(comfyui_job(ref, storage, customer))
        assert failure.value.failure_class == FailureClass.JOB_FAULT
    assert not fake_comfyui.history
    assert not [key for key in fake_comfyui.files if key[0] == "input"]


async def test_a_malformed_reference_is_a_job_fault(
    comfyui: ComfyUIConnector, storage: AssetStorage
) -> None:
    for ref in ("s3://assets/renders/job-1/out.png", "https://example.com/in.png"):
        with pytest.raises(JobFailedError, match="not an upload reference") as failure:
            await comfyui.run(comfyui_job(ref, storage, "acme"))
        assert failure.value.failure_class == FailureClass.JOB_FAULT


async def test_a_rest_job_sends_an_uploaded_file_as_its_body_with_its_type(
    rest: RestSyncConnector, storage: AssetStorage
) -> None:
    text = "a document for the service\n"
    ref = await uploaded(storage, text.encode(), "text/plain", "doc.txt")
    payload = {"method": "POST", "path": "/echo", "body_upload": ref}

    result = await rest.run(
        RecordingJob(make_job("rest-sync", payload, customer_id="acme"), storage)
    )

    echoed = result["json"]
    assert echoed["body"] == text
    assert echoed["headers"]["content-type"] == "text/plain"


async def test_a_rest_job_gives_one_body_only(
    rest: RestSyncConnector, storage: AssetStorage
) -> None:
    ref = await uploaded(storage, b"{}", "application/json", "x.json")
    payload = {"path": "/echo", "body": "text", "body_upload": ref}
    job = RecordingJob(make_job("rest-sync", payload, customer_id="acme"), storage)

    with pytest.raises(JobFailedError, match="at most one of 'json', 'body' or 'body_upload'"):
        await rest.run(job)


@pytest_asyncio.fixture
async def a1111(fake_a1111: FakeA1111) -> AsyncIterator[A1111Connector]:
    fake_a1111.step_delay_s = 0.001
    connector = A1111Connector(A1111Config(url=fake_a1111.url, progress_interval_s=0.02))
    await connector.start()
    yield connector
    await connector.close()


async def test_a1111_img2img_gets_the_uploaded_image_and_mask(
    a1111: A1111Connector, fake_a1111: FakeA1111, storage: AssetStorage
) -> None:
    mask = solid_png(8, 8, (255, 255, 255))
    payload = {
        "operation": "img2img",
        "prompt": "a fox",
        "steps": 2,
        "init_image_uploads": [await uploaded(storage, IMAGE, "image/png", "in.png")],
        "mask_upload": await uploaded(storage, mask, "image/png", "mask.png"),
    }

    result = await a1111.run(RecordingJob(make_job("a1111", payload, customer_id="acme"), storage))

    assert fake_a1111.received_images == [IMAGE, mask]
    assert len(result["outputs"]) == 1
    both = {**payload, "init_images": ["aGk="]}
    with pytest.raises(JobFailedError, match="not both"):
        await a1111.run(RecordingJob(make_job("a1111", both, customer_id="acme"), storage))
