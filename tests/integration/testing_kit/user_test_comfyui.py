"""A user's test of a ComfyUI job through the API, with nothing but the kit's fixtures.

This file is also what the packaging test writes into a fresh project with no conftest, so it
imports only the installed package's public modules.
"""

import asyncio

import pytest

from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.connectors.comfyui_workflows import txt2img

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.asyncio


async def test_a_comfyui_job_submitted_through_the_api_stores_its_image(
    api_client, worker, fake_comfyui
):
    workflow = txt2img("a lighthouse", checkpoint="sd_xl_base_1.0.safetensors", steps=2, size=16)
    submitted = await api_client.http.post(
        "/api/jobs",
        json={"service_required": "comfyui", "payload": {"workflow": workflow}},
        headers=api_client.as_client,
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]

    connector = ComfyUIConnector(ComfyUIConfig(url=fake_comfyui.url))
    async with worker(connector):
        async with asyncio.timeout(30):
            while True:
                job = (
                    await api_client.http.get(f"/api/jobs/{job_id}", headers=api_client.as_client)
                ).json()
                if job["status"] in ("completed", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.05)

    assert job["status"] == "completed", job
    (output,) = job["result"]["outputs"]
    assert output["kind"] == "images"
    image = await api_client.http.get(output["url"], headers=api_client.as_client)
    assert image.status_code == 200
    assert image.content.startswith(PNG_SIGNATURE)
