"""The fake AUTOMATIC1111 answers txt2img/img2img, reports progress, interrupts, switches models."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from emp_queue.media import png_size
from emp_queue.testing.fakes.a1111 import FakeA1111
from emp_queue.testing.fakes.fixtures import fake_a1111  # noqa: F401


@pytest.fixture
async def http(fake_a1111: FakeA1111) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=fake_a1111.url) as client:
        yield client


async def wait_for_step(http: httpx.AsyncClient, step: int) -> dict[str, object]:
    async with asyncio.timeout(3):
        while True:
            progress: dict[str, object] = (await http.get("/sdapi/v1/progress")).json()
            state = progress["state"]
            assert isinstance(state, dict)
            if state["sampling_step"] >= step:
                return progress
            await asyncio.sleep(0.005)


async def test_txt2img_returns_base64_pngs_and_info(http: httpx.AsyncClient) -> None:
    body = {"prompt": "a fox", "steps": 4, "width": 128, "height": 96, "batch_size": 2, "seed": 7}

    reply = (await http.post("/sdapi/v1/txt2img", json=body)).json()

    assert len(reply["images"]) == 2
    assert all(png_size(base64.b64decode(i)) == (128, 96) for i in reply["images"])
    assert json.loads(reply["info"])["all_seeds"] == [7, 8]
    assert reply["parameters"]["prompt"] == "a fox"


async def test_progress_is_reported_while_a_generation_runs_and_interrupt_ends_it(
    fake_a1111: FakeA1111,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_a1111.step_delay_s = 0.01
    running = asyncio.create_task(http.post("/sdapi/v1/txt2img", json={"steps": 500}))

    progress = await wait_for_step(http, 2)
    await http.post("/sdapi/v1/interrupt")
    async with asyncio.timeout(1):  # 500 steps would take 5 s
        reply = await running
    idle = (await http.get("/sdapi/v1/progress")).json()

    assert 0 < float(str(progress["progress"])) < 1
    assert float(str(progress["eta_relative"])) > 0
    assert reply.status_code == 200
    assert len(reply.json()["images"]) == 1
    assert idle["state"]["job_count"] == 0
    assert idle["progress"] == 0.0


async def test_img2img_needs_an_init_image(http: httpx.AsyncClient) -> None:
    missing = await http.post("/sdapi/v1/img2img", json={"prompt": "x"})
    init = base64.b64encode(b"png bytes").decode()
    done = await http.post("/sdapi/v1/img2img", json={"prompt": "x", "init_images": [init]})

    assert missing.status_code == 404
    assert missing.json()["detail"] == "Init image not found"
    assert len(done.json()["images"]) == 1


async def test_models_are_listed_and_switched_through_options(http: httpx.AsyncClient) -> None:
    models = (await http.get("/sdapi/v1/sd-models")).json()
    target = models[1]["title"]

    switched = await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": target})
    options = (await http.get("/sdapi/v1/options")).json()
    unknown = await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})

    assert switched.status_code == 200
    assert options["sd_model_checkpoint"] == target
    assert unknown.status_code == 500


async def test_an_injected_failure_answers_an_a1111_error_body(
    fake_a1111: FakeA1111,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_a1111.fail_next()

    failed = await http.post("/sdapi/v1/txt2img", json={"prompt": "x"})
    recovered = await http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1})

    assert failed.status_code == 500
    assert failed.json()["error"] == "OutOfMemoryError"
    assert "CUDA out of memory" in failed.json()["errors"]
    assert recovered.status_code == 200


async def test_an_unknown_checkpoint_answers_a1111s_runtime_error_body(
    http: httpx.AsyncClient,
) -> None:
    unknown = await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert unknown.status_code == 500
    assert unknown.json() == {
        "error": "RuntimeError",
        "detail": "",
        "body": "",
        "errors": "model 'nope' not found",
    }


async def test_unload_and_reload_move_the_weights_but_options_keep_the_checkpoint(
    fake_a1111: FakeA1111,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    before = (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"]
    unloaded = await http.post("/sdapi/v1/unload-checkpoint")
    assert (unloaded.status_code, unloaded.json()) == (200, {})
    assert not fake_a1111.weights_loaded
    assert (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"] == before
    reloaded = await http.post("/sdapi/v1/reload-checkpoint")
    assert (reloaded.status_code, reloaded.json()) == (200, {})
    assert fake_a1111.weights_loaded
    assert (fake_a1111.unloads, fake_a1111.reloads) == (1, 1)
    # A generation after an unload loads the weights again, as A1111 does.
    await http.post("/sdapi/v1/unload-checkpoint")
    await http.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1})
    assert fake_a1111.weights_loaded


async def test_with_a_models_folder_the_list_changes_only_at_refresh_checkpoints(
    tmp_path: Path,
) -> None:
    (tmp_path / "SDXL").mkdir()
    (tmp_path / "a.safetensors").write_bytes(b"a")
    (tmp_path / "SDXL" / "b.ckpt").write_bytes(b"b")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    fake = FakeA1111(models_dir=tmp_path)
    async with fake.running() as url, httpx.AsyncClient(base_url=f"{url}/sdapi/v1") as http:

        async def names() -> list[str]:
            return [m["title"].rsplit(" [", 1)[0] for m in (await http.get("/sd-models")).json()]

        assert await names() == ["a.safetensors", "SDXL/b.ckpt"]
        (tmp_path / "SDXL" / "b.ckpt").unlink()
        (tmp_path / "c.safetensors").write_bytes(b"c")
        assert await names() == ["a.safetensors", "SDXL/b.ckpt"]  # A1111 has not looked yet

        refreshed = await http.post("/refresh-checkpoints")

        assert (refreshed.status_code, refreshed.json()) == (200, None)
        assert await names() == ["a.safetensors", "c.safetensors"]
        assert fake.refreshes == 1
        (listed,) = [m for m in (await http.get("/sd-models")).json() if m["model_name"] == "a"]
        assert listed["filename"] == str(tmp_path / "a.safetensors")
