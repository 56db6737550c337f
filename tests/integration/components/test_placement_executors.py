"""Placement carried out for real: checkpoints switched and unloaded on a fake A1111, warm-up
prompts and ``/free`` on a fake ComfyUI, evicted files deleted from a real models folder —
each through a placement round on the real broker, and seen by the services' connectors."""

from __future__ import annotations

import json
from pathlib import Path

from emp_queue import JobQueue, JobSpec
from emp_queue.connectors.a1111 import A1111Config, A1111Connector
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.machine.components import ComponentManager, ComponentSettings
from emp_queue.machine.model_files import ModelFiles
from emp_queue.machine.placement import Action
from emp_queue.machine.placement_loop import (
    Budgets,
    Executors,
    ManifestDownloads,
    needed,
)
from emp_queue.machine.placement_services import A1111Checkpoints, ComfyUIWarmup
from emp_queue.testing.fakes.a1111 import FakeA1111
from emp_queue.testing.fakes.comfyui import FakeComfyUI

from .conftest import ModelServer, model_entry
from .placement_helpers import GB, Events, decision, loop, register

V15 = "v1-5-pruned-emaonly.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"


async def no_progress(fraction: float) -> None:
    raise AssertionError("no progress expected")


async def test_an_a1111_checkpoint_in_demand_replaces_the_idle_one(job_queue: JobQueue) -> None:
    fake = FakeA1111()
    async with fake.running() as url:
        sizes = {V15: 4 * GB, SDXL: 7 * GB}
        await register(job_queue, "a-0", "a1111", installed=[V15, SDXL], loaded=[V15], sizes=sizes)
        needing = {"models": [SDXL]}
        await job_queue.submit_many([JobSpec(service_required="a1111", requirements=needing)] * 2)
        events = Events()
        await loop(job_queue, A1111Checkpoints(url), events).step()

        assert events.outcomes() == [("unload", V15, "done"), ("load", SDXL, "done")]
        assert (fake.unloads, fake.switches, fake.current_checkpoint) == (1, [SDXL], SDXL)
        assert fake.weights_loaded
        connector = A1111Connector(A1111Config(url=url))
        await connector.start()
        try:
            assert (await connector.discover()).models.loaded == [SDXL]
        finally:
            await connector.close()


async def test_a1111_reloads_the_selected_checkpoint_and_refuses_an_unknown_one() -> None:
    fake = FakeA1111()
    async with fake.running() as url:
        executor = A1111Checkpoints(url)
        unloaded = await executor.carry_out(decision(Action.UNLOAD, "a1111", V15), no_progress)
        assert unloaded.done
        assert not fake.weights_loaded
        other = await executor.carry_out(decision(Action.UNLOAD, "a1111", SDXL), no_progress)
        assert other.done
        assert "not loaded" in other.detail
        assert fake.unloads == 1

        reloaded = await executor.carry_out(decision(Action.LOAD, "a1111", V15), no_progress)
        assert reloaded.done
        assert "reload-checkpoint" in reloaded.detail
        assert fake.weights_loaded
        assert fake.switches == []  # the same checkpoint: no switch, its weights back

        unknown = await executor.carry_out(decision(Action.LOAD, "a1111", "nope"), no_progress)
        assert not unknown.done
        assert unknown.detail == f"not a checkpoint of this a1111; installed: {V15}, {SDXL}"


async def test_a_comfyui_checkpoint_is_warmed_up_and_the_worker_reports_it_loaded(
    job_queue: JobQueue,
) -> None:
    fake = FakeComfyUI()
    async with fake.running() as url:
        await register(job_queue, "c-0", "comfyui", installed=[SDXL, V15], sizes={SDXL: 7 * GB})
        needing = {"models": [SDXL]}
        await job_queue.submit(JobSpec(service_required="comfyui", requirements=needing))
        events = Events()
        await loop(job_queue, ComfyUIWarmup(url, poll_s=0.05), events).step()

        assert events.outcomes() == [("load", SDXL, "done")]
        assert fake.loaded_models == [SDXL]
        assert [e["progress"] for e in events.fields if e["status"] == "progress"] == [1.0]
        (warm_up,) = fake.history.values()
        assert [image["type"] for image in warm_up["outputs"]["6"]["images"]] == ["temp"]
        assert not [key for key in fake.files if key[0] == "output"]  # a preview only

        connector = ComfyUIConnector(ComfyUIConfig(url=url))
        await connector.start()
        try:
            assert (await connector.discover()).models.loaded == [SDXL]
        finally:
            await connector.close()

        executor = ComfyUIWarmup(url)
        freed = await executor.carry_out(decision(Action.UNLOAD, "comfyui", SDXL), no_progress)
        assert freed.done
        assert "every model" in freed.detail
        assert fake.free_requests == [{"unload_models": True, "free_memory": True}]
        assert fake.loaded_models == []


async def test_comfyui_refuses_a_warm_up_of_what_is_not_a_checkpoint() -> None:
    fake = FakeComfyUI()
    async with fake.running() as url:
        lora = "detail-tweaker.safetensors"
        outcome = await ComfyUIWarmup(url).carry_out(
            decision(Action.LOAD, "comfyui", lora), no_progress
        )
        assert not outcome.done
        assert outcome.detail.startswith(
            "ComfyUI refused the warm-up prompt (prompt_outputs_failed_validation"
        )
        assert f"node 1: Value not in list: ckpt_name: '{lora}' not in" in outcome.detail
        assert fake.loaded_models == []
        assert fake.history == {}


def flux_manifest_and_old_checkpoint(
    model_server: ModelServer, settings: ComponentSettings, flux: bytes, old_size: int
) -> tuple[ComponentSettings, Path]:
    """Settings whose manifest offers ``flux``, and an installed ``old.safetensors`` of
    ``old_size`` bytes in the models folder (the model an eviction makes room with)."""
    entry = model_entry(model_server, "flux", flux)
    model_server.files["manifest.json"] = json.dumps({"models": [entry]}).encode()
    settings = settings.model_copy(
        update={"manifest": f"{model_server.url}/manifest/manifest.json"}
    )
    old = Path(settings.models_dir) / "checkpoints" / "old.safetensors"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"o" * old_size)
    return settings, old


async def test_an_evicted_model_is_deleted_and_the_worker_no_longer_lists_it(
    job_queue: JobQueue, model_server: ModelServer, settings: ComponentSettings
) -> None:
    data = b"flux" * 100_000
    settings, old = flux_manifest_and_old_checkpoint(model_server, settings, data, 300_000)
    fake = FakeComfyUI(models={}, models_dir=Path(settings.models_dir))
    async with fake.running() as url:
        connector = ComfyUIConnector(ComfyUIConfig(url=url))
        await connector.start()
        try:
            assert (await connector.discover()).models.installed == ["old.safetensors"]
            sizes = {"old.safetensors": 300_000, "flux.safetensors": len(data)}
            await register(
                job_queue,
                "c-0",
                "comfyui",
                installed=["old.safetensors"],
                fetchable=["flux.safetensors"],
                sizes=sizes,
            )
            needing = {"models": ["flux.safetensors"]}
            await job_queue.submit(JobSpec(service_required="comfyui", requirements=needing))
            manager = ComponentManager(settings)
            executor = Executors(
                ManifestDownloads(manager, settings),
                ComfyUIWarmup(url, poll_s=0.05),
                ModelFiles(manager, settings),
            )
            events = Events()
            placement = loop(job_queue, executor, events)
            placement.budgets = Budgets(vram_bytes=24 * GB, disk_bytes=500_000)
            await placement.step()

            assert events.outcomes() == [
                ("delete", "old.safetensors", "done"),
                ("download", "flux.safetensors", "done"),
                ("load", "flux.safetensors", "done"),
            ]
            deleted = next(e for e in events.fields if e["action"] == "delete" and "detail" in e)
            assert deleted["freed_bytes"] == 300_000
            assert deleted["detail"] == "deleted checkpoints/old.safetensors: 300000 bytes freed"
            assert not old.exists()
            found = (await connector.discover()).models
            assert (found.installed, found.loaded) == (["flux.safetensors"], ["flux.safetensors"])
        finally:
            await connector.close()


async def test_a_model_is_kept_when_a_job_now_waits_for_it_or_a_worker_has_it_loaded(
    job_queue: JobQueue, settings: ComponentSettings
) -> None:
    old = Path(settings.models_dir) / "checkpoints" / "old.safetensors"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"o" * 10)
    delete = decision(Action.DELETE, "comfyui", "old.safetensors")
    await register(job_queue, "c-0", "comfyui", loaded=["old.safetensors"])
    assert await needed(job_queue, "here", delete) == "worker c-0 has it loaded"
    assert (
        await needed(job_queue, "here", decision(Action.UNLOAD, "comfyui", "old.safetensors"))
        is None
    )

    await register(job_queue, "c-0", "comfyui", installed=["old.safetensors"])
    assert await needed(job_queue, "here", delete) is None
    needing = {"models": ["old.safetensors"]}
    job = await job_queue.submit(JobSpec(service_required="comfyui", requirements=needing))
    assert await needed(job_queue, "here", delete) == "1 job(s) wait for it now"
    (claimed,) = await job_queue.claim("c-0")
    assert claimed.job.id == job.id
    assert (
        await needed(job_queue, "here", delete) == f"job {job.id} running on this machine needs it"
    )

    events = Events()
    manager = ComponentManager(settings)
    placement = loop(
        job_queue,
        Executors(ManifestDownloads(manager, settings), ModelFiles(manager, settings)),
        events,
    )
    await placement.carry_out(delete)
    assert events.outcomes() == [("delete", "old.safetensors", "not_done")]
    assert events.fields[-1]["detail"] == f"kept: job {job.id} running on this machine needs it"
    assert old.exists()


async def test_when_an_eviction_is_kept_the_rest_of_its_chain_is_skipped(
    job_queue: JobQueue, model_server: ModelServer, settings: ComponentSettings
) -> None:
    data = b"flux" * 1000
    settings, old = flux_manifest_and_old_checkpoint(model_server, settings, data, 10_000)
    sizes = {"old.safetensors": 10_000, "flux.safetensors": len(data)}
    held = {"installed": ["old.safetensors"], "fetchable": ["flux.safetensors"], "sizes": sizes}
    await register(job_queue, "c-0", "comfyui", **held)
    running = await job_queue.submit(
        JobSpec(service_required="comfyui", requirements={"models": ["old.safetensors"]})
    )
    (claimed,) = await job_queue.claim("c-0")
    assert claimed.job.id == running.id  # running here: no longer waiting, still needed
    await job_queue.submit(
        JobSpec(service_required="comfyui", requirements={"models": ["flux.safetensors"]})
    )
    manager = ComponentManager(settings)
    events = Events()
    placement = loop(
        job_queue,
        Executors(ManifestDownloads(manager, settings), ModelFiles(manager, settings)),
        events,
    )
    placement.budgets = Budgets(vram_bytes=24 * GB, disk_bytes=12_000)
    await placement.step()

    assert events.outcomes() == [
        ("delete", "old.safetensors", "not_done"),
        ("download", "flux.safetensors", "not_done"),
        ("load", "flux.safetensors", "not_done"),
    ]
    details = [e["detail"] for e in events.fields if "detail" in e]
    assert details == [
        f"kept: job {running.id} running on this machine needs it",
        "skipped: the delete of old.safetensors was not done",
        "skipped: the delete of old.safetensors was not done",
    ]
    assert old.exists()
    assert not (Path(settings.models_dir) / "checkpoints" / "flux.safetensors").exists()
    assert all(name != "flux" for name, _ in model_server.requests)  # never downloaded
