"""The machine agent's placement round: the fleet's demand, this machine's workers, a real
download from a model source on loopback, and a machine_placement event per decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.machine.components import ComponentManager, ComponentSettings
from emp_queue.machine.placement import Action
from emp_queue.machine.placement_loop import (
    Budgets,
    Executors,
    ManifestDownloads,
    OllamaPreload,
    PlacementLoop,
)
from emp_queue.models import EventType
from emp_queue.testing.fakes.ollama import FakeOllama

from .conftest import ModelServer, model_entry

GB = 1_000_000_000


async def test_a_round_downloads_the_model_in_demand_and_reports_each_step(
    job_queue: JobQueue, model_server: ModelServer, settings: ComponentSettings
) -> None:
    data = b"weights" * 50_000
    entry = model_entry(model_server, "flux", data)
    model_server.files["manifest.json"] = json.dumps({"models": [entry]}).encode()
    settings = settings.model_copy(
        update={"manifest": f"{model_server.url}/manifest/manifest.json"}
    )
    models = {
        "fetchable": ["flux.safetensors"],
        "sizes": {"flux.safetensors": len(data), "sdxl.safetensors": 6 * GB},
        "loaded": ["sdxl.safetensors"],
        "installed": ["sdxl.safetensors"],
    }
    caps = WorkerCapabilities.model_validate(
        {"services": ["comfyui"], "models": {"comfyui": models}}
    )
    await job_queue.register_worker("here-0", caps, machine_id="here")
    await job_queue.register_worker("elsewhere-0", caps, machine_id="elsewhere")
    needing = {"models": ["flux.safetensors"]}
    await job_queue.submit_many([JobSpec(service_required="comfyui", requirements=needing)] * 3)

    events: list[dict[str, Any]] = []

    async def publish(event: EventType, **fields: Any) -> None:
        assert event is EventType.MACHINE_PLACEMENT
        events.append(fields)

    loop = PlacementLoop(
        job_queue,
        "here",
        Budgets(vram_bytes=24 * GB, disk_bytes=100 * GB),
        ManifestDownloads(ComponentManager(settings), settings),
        publish,
        interval_s=60,
    )
    decisions = await loop.step()

    assert [(d.action, d.model) for d in decisions] == [
        (Action.DOWNLOAD, "flux.safetensors"),
        (Action.LOAD, "flux.safetensors"),
    ]
    placed = Path(settings.models_dir) / "checkpoints" / "flux.safetensors"
    assert placed.read_bytes() == data
    statuses = [(e["action"], e["status"]) for e in events if e["status"] != "progress"]
    assert statuses == [
        ("download", "started"), ("download", "done"), ("load", "started"), ("load", "not_done"),
    ]  # fmt: skip
    assert "3 waiting" in events[0]["reason"]
    assert any(e["status"] == "progress" and e["progress"] == 1.0 for e in events)
    assert "on request" in events[-1]["detail"]


async def test_an_ollama_model_in_demand_is_loaded_through_ollama(job_queue: JobQueue) -> None:
    fake = FakeOllama()
    model = "llama3.2:1b"
    async with fake.running() as url:
        held = {"installed": [model], "sizes": {model: 2 * GB}}
        caps = WorkerCapabilities.model_validate(
            {"services": ["ollama"], "models": {"ollama": held}}
        )
        await job_queue.register_worker("here-ollama", caps, machine_id="here")
        needing = {"models": [model]}
        await job_queue.submit_many([JobSpec(service_required="ollama", requirements=needing)] * 2)
        events: list[dict[str, Any]] = []

        async def publish(event: EventType, **fields: Any) -> None:
            events.append(fields)

        downloads = ManifestDownloads(ComponentManager(ComponentSettings()), ComponentSettings())
        loop = PlacementLoop(
            job_queue,
            "here",
            Budgets(vram_bytes=24 * GB, disk_bytes=100 * GB),
            Executors(downloads, OllamaPreload(url)),
            publish,
            interval_s=60,
        )
        decisions = await loop.step()

        assert [(d.action, d.model) for d in decisions] == [(Action.LOAD, model)]
        assert [e["status"] for e in events] == ["started", "done"]
        assert [m["name"] for m in fake.running_models()] == [model]  # what /api/ps shows
