"""The fake ComfyUI speaks ComfyUI's protocol, failure modes included (real httpx/websockets)."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from emp_queue.connectors import comfyui_workflows as workflows
from emp_queue.media import PNG_SIGNATURE, png_size
from emp_queue.testing.fakes.comfyui import FakeComfyUI
from emp_queue.testing.fakes.fixtures import fake_comfyui  # noqa: F401

CHECKPOINT = "sd_xl_base_1.0.safetensors"


def txt2img(
    *, steps: int = 3, seed: int = 1, ckpt: str = CHECKPOINT, size: int = 64
) -> dict[str, Any]:
    """The API-format graph of ComfyUI's default text-to-image workflow."""
    return workflows.txt2img("a cat", checkpoint=ckpt, seed=seed, steps=steps, size=size)


@pytest.fixture
async def http(fake_comfyui: FakeComfyUI) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=fake_comfyui.url) as client:
        yield client


def ws_url(fake: FakeComfyUI, client_id: str) -> str:
    return fake.url.replace("http://", "ws://") + f"/ws?clientId={client_id}"


async def submit(http: httpx.AsyncClient, prompt: dict[str, Any], client_id: str | None) -> str:
    prompt_id = str(uuid.uuid4())
    body: dict[str, Any] = {"prompt": prompt, "prompt_id": prompt_id}
    if client_id is not None:
        body["client_id"] = client_id
    response = await http.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["prompt_id"] == prompt_id
    return prompt_id


async def read_until(
    ws: ClientConnection, terminal: set[str], prompt_id: str | None = None
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Messages (and binary frames) up to the first terminal message of ``prompt_id``."""
    messages: list[dict[str, Any]] = []
    frames: list[bytes] = []
    async with asyncio.timeout(5):
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                frames.append(raw)
                continue
            message = json.loads(raw)
            messages.append(message)
            data = message["data"]
            if message["type"] in terminal and prompt_id in (None, data.get("prompt_id")):
                return messages, frames


async def test_prompt_reports_every_message_in_order(fake_comfyui: FakeComfyUI) -> None:  # noqa: F811
    async with (
        httpx.AsyncClient(base_url=fake_comfyui.url) as http,
        connect(ws_url(fake_comfyui, "worker-1")) as ws,
    ):
        hello = json.loads(await ws.recv())
        assert hello == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "worker-1"},
        }
        prompt_id = await submit(http, txt2img(steps=3), "worker-1")
        messages, frames = await read_until(ws, {"executing"}, prompt_id)
        while messages[-1]["data"]["node"] is not None:
            more, more_frames = await read_until(ws, {"executing"}, prompt_id)
            messages += more
            frames += more_frames

    ours = [m for m in messages if m["data"].get("prompt_id") == prompt_id]
    kinds = [m["type"] for m in ours]
    assert kinds[:2] == ["execution_start", "execution_cached"]
    assert kinds[-2:] == ["execution_success", "executing"]
    executing = [m["data"]["node"] for m in ours if m["type"] == "executing"]
    assert sorted(executing[:4]) == ["4", "5", "6", "7"]
    assert executing[4:] == ["3", "8", "9", None]
    progress = [(m["data"]["value"], m["data"]["max"]) for m in ours if m["type"] == "progress"]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert all(m["data"]["node"] == "3" for m in ours if m["type"] == "progress")
    states = [m["data"]["nodes"] for m in ours if m["type"] == "progress_state"]
    assert states[-1]["9"]["state"] == "finished"
    assert any(s.get("3", {}).get("value") == 2 and s["3"]["max"] == 3 for s in states)
    (executed,) = [m["data"] for m in ours if m["type"] == "executed"]
    assert executed["node"] == "9"
    assert executed["output"]["images"][0]["type"] == "output"
    assert len(frames) == 3
    for frame in frames:
        assert struct.unpack(">II", frame[:8]) == (1, 2)
        assert frame[8:].startswith(PNG_SIGNATURE)


async def test_history_is_empty_while_running_then_holds_the_outputs(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_comfyui.step_delay_s = 0.02
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        prompt_id = await submit(http, txt2img(steps=5, size=96), "w")
        await read_until(ws, {"progress"}, prompt_id)
        assert (await http.get(f"/history/{prompt_id}")).json() == {}
        running = (await http.get("/queue")).json()["queue_running"]
        assert [item[1] for item in running] == [prompt_id]
        await read_until(ws, {"execution_success"}, prompt_id)

    entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    (image,) = entry["outputs"]["9"]["images"]
    view = await http.get("/view", params=image)
    assert view.status_code == 200
    assert view.headers["content-type"] == "image/png"
    assert png_size(view.content) == (96, 96)
    assert (await http.get("/queue")).json() == {"queue_running": [], "queue_pending": []}
    assert (await http.get(f"/history/{uuid.uuid4()}")).json() == {}


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, "missing_node_type"),
        (
            {
                "prompt": {
                    "1": {
                        "class_type": "CheckpointLoaderSimple",
                        "inputs": {"ckpt_name": CHECKPOINT},
                    }
                }
            },
            "prompt_no_outputs",
        ),
        ({"client_id": "x"}, "no_prompt"),
    ],
)
async def test_invalid_prompts_are_rejected_with_comfyui_error_bodies(
    http: httpx.AsyncClient, body: dict[str, Any], error_type: str
) -> None:
    response = await http.post("/prompt", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == error_type
    assert response.json()["node_errors"] == {}


async def test_a_model_file_not_installed_is_value_not_in_list(http: httpx.AsyncClient) -> None:
    response = await http.post("/prompt", json={"prompt": txt2img(ckpt="missing.safetensors")})

    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    (error,) = body["node_errors"]["4"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["extra_info"]["received_value"] == "missing.safetensors"
    assert body["node_errors"]["4"]["class_type"] == "CheckpointLoaderSimple"


async def test_object_info_and_models_list_the_installed_files(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_comfyui.models["checkpoints"].append("flux1-dev.safetensors")

    info = (await http.get("/object_info")).json()
    kind, spec = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    choices = spec["options"]  # ComfyUI 0.27's COMBO form
    sampler_names, _ = info["KSampler"]["input"]["required"]["sampler_name"]  # the legacy form
    assert kind == "COMBO"
    assert "euler" in sampler_names
    assert "flux1-dev.safetensors" in choices
    assert (await http.get("/api/models/checkpoints")).json() == choices
    stats = (await http.get("/system_stats")).json()
    assert stats["devices"][0]["vram_total"] > stats["devices"][0]["vram_free"] > 0


async def test_an_uploaded_image_feeds_load_image(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    files = {"image": ("in.png", b"\x89PNG fake", "image/png")}
    uploaded = await http.post("/upload/image", files=files, data={"overwrite": "true"})
    assert uploaded.json() == {"name": "in.png", "subfolder": "", "type": "input"}
    again = await http.post("/upload/image", files=files)
    assert again.json()["name"] == "in (1).png"

    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        prompt_id = await submit(http, graph, "w")
        messages, _ = await read_until(ws, {"execution_success"}, prompt_id)
    (executed,) = [m["data"] for m in messages if m["type"] == "executed"]
    assert executed["output"]["images"][0]["type"] == "temp"

    graph["1"]["inputs"]["image"] = "never-uploaded.png"
    rejected = await http.post("/prompt", json={"prompt": graph})
    assert rejected.json()["node_errors"]["1"]["errors"][0]["type"] == "custom_validation_failed"


async def test_interrupt_ends_the_prompt_with_execution_interrupted(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_comfyui.step_delay_s = 0.01
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        prompt_id = await submit(http, txt2img(steps=500), "w")
        await read_until(ws, {"progress"}, prompt_id)
        await http.post("/interrupt", json={"prompt_id": "someone-else"})
        await http.post("/interrupt", json={"prompt_id": prompt_id})
        messages, _ = await read_until(ws, {"execution_interrupted"}, prompt_id)

    interrupted = messages[-1]["data"]
    assert interrupted["node_id"] == "3"
    assert interrupted["node_type"] == "KSampler"
    assert not [m for m in messages if m["type"] == "progress" and m["data"]["value"] == 500]
    entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False


@pytest.mark.parametrize("trigger", ["control", "graph"])
async def test_a_failing_node_reports_execution_error(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
    trigger: str,
) -> None:
    graph = txt2img()
    if trigger == "control":
        fake_comfyui.fail_next("VAEDecode", "CUDA out of memory", "torch.OutOfMemoryError")
    else:
        graph["8"]["inputs"]["fake_raise"] = "CUDA out of memory"
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        prompt_id = await submit(http, graph, "w")
        messages, _ = await read_until(ws, {"execution_error", "execution_success"}, prompt_id)

    error = messages[-1]
    assert error["type"] == "execution_error"
    assert error["data"]["node_id"] == "8"
    assert error["data"]["exception_message"] == "CUDA out of memory"
    assert "executed" not in [m["type"] for m in messages]
    entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]
    assert entry["status"]["status_str"] == "error"
    assert entry["outputs"] == {}


async def test_restart_drops_the_socket_and_loses_queue_and_history(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_comfyui.step_delay_s = 0.01
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        lost = await submit(http, txt2img(steps=500), "w")
        queued = await submit(http, txt2img(steps=2, seed=2), "w")
        await read_until(ws, {"progress"}, lost)
        await fake_comfyui.restart()
        with pytest.raises(ConnectionClosedError) as closed:
            await read_until(ws, set())
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012

    assert (await http.get("/queue")).json() == {"queue_running": [], "queue_pending": []}
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        hello = json.loads(await ws.recv())
        assert hello["data"]["status"]["exec_info"]["queue_remaining"] == 0
        after = await submit(http, txt2img(steps=2, seed=3), "w")
        await read_until(ws, {"execution_success"}, after)
    assert (await http.get(f"/history/{lost}")).json() == {}
    assert (await http.get(f"/history/{queued}")).json() == {}
    assert fake_comfyui.executed_prompt_ids == [lost, after]


async def test_prompts_of_other_clients_arrive_on_our_socket(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    async with connect(ws_url(fake_comfyui, "ours")) as ws:
        foreign = await submit(http, txt2img(steps=2), client_id=None)
        messages, frames = await read_until(ws, {"executed"}, foreign)
        private = await submit(http, txt2img(steps=2, seed=9), client_id="someone-else")
        ours = await submit(http, txt2img(steps=2, seed=10), client_id="ours")
        later, _ = await read_until(ws, {"execution_success"}, ours)

    kinds = {m["type"] for m in messages if m["data"].get("prompt_id") == foreign}
    assert {"executing", "progress", "progress_state", "executed"} <= kinds
    assert "execution_start" not in kinds
    assert len(frames) == 2
    assert not [m for m in later if m["data"].get("prompt_id") == private]
    assert any(m["type"] == "status" for m in later)


async def test_an_unchanged_graph_is_served_from_the_cache(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        first = await submit(http, txt2img(), "w")
        await read_until(ws, {"execution_success"}, first)
        second = await submit(http, txt2img(), "w")
        messages, frames = await read_until(ws, {"execution_success"}, second)

    cached = next(m for m in messages if m["type"] == "execution_cached")
    assert sorted(cached["data"]["nodes"]) == ["3", "4", "5", "6", "7", "8", "9"]
    assert frames == []
    assert "progress" not in [m["type"] for m in messages]
    executed = next(m for m in messages if m["type"] == "executed")
    assert executed["data"]["output"]["images"]


async def test_pending_prompts_can_be_deleted_from_the_queue(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_comfyui.step_delay_s = 0.01
    running = await submit(http, txt2img(steps=500), None)
    pending = await submit(http, txt2img(steps=500, seed=2), None)
    await http.post("/queue", json={"delete": [pending]})
    queue = (await http.get("/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [running]
    assert queue["queue_pending"] == []


async def test_a_sampled_checkpoint_is_loaded_until_free_unloads_it(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        first = await submit(http, txt2img(), "w")
        await read_until(ws, {"execution_success"}, first)
    assert fake_comfyui.loaded_models == [CHECKPOINT]

    freed = await http.post("/free", json={"unload_models": True})
    assert (freed.status_code, freed.content) == (200, b"")
    assert fake_comfyui.loaded_models == []
    assert fake_comfyui.node_cache  # unload_models alone keeps the execution cache
    await http.post("/free", json={"free_memory": True})  # unload_models defaults to it
    assert fake_comfyui.free_requests[-1] == {"unload_models": True, "free_memory": True}
    assert fake_comfyui.node_cache == {}


async def test_free_during_a_prompt_takes_effect_once_it_has_run(
    fake_comfyui: FakeComfyUI,  # noqa: F811
    http: httpx.AsyncClient,
) -> None:
    fake_comfyui.step_delay_s = 0.05
    async with connect(ws_url(fake_comfyui, "w")) as ws:
        prompt_id = await submit(http, txt2img(steps=6), "w")
        await read_until(ws, {"progress"}, prompt_id)
        await http.post("/free", json={"unload_models": True, "free_memory": True})
        assert fake_comfyui.loaded_models == [CHECKPOINT]  # still running with it
        await read_until(ws, {"execution_success"}, prompt_id)
        await read_until(ws, {"status"})  # sent once the executor is done with the prompt
    assert fake_comfyui.loaded_models == []


async def test_a_models_folder_on_disk_is_listed_and_a_deleted_file_vanishes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "models" / "checkpoints"
    (folder / "sub").mkdir(parents=True)
    (folder / "disk.safetensors").write_bytes(b"x")
    (folder / "sub" / "nested.ckpt").write_bytes(b"x")
    (folder / "notes.txt").write_bytes(b"x")
    fake = FakeComfyUI(models={"checkpoints": [CHECKPOINT]}, models_dir=tmp_path / "models")
    async with fake.running() as url, httpx.AsyncClient(base_url=url) as client:
        listed = (await client.get("/models/checkpoints")).json()
        assert listed == [CHECKPOINT, "disk.safetensors", "sub/nested.ckpt"]
        (folder / "disk.safetensors").unlink()
        info = (await client.get("/object_info/CheckpointLoaderSimple")).json()
        options = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
        assert "disk.safetensors" not in json.dumps(options)
        assert "sub/nested.ckpt" in json.dumps(options)
