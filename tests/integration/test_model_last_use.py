"""A worker records when each model was last used (a job needing it finished there) and
publishes it with its models; the machine agent's placement evicts by that order."""

from __future__ import annotations

from emp_queue import JobQueue, JobSpec
from emp_queue.connectors import comfyui_workflows as workflows
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.machine.placement_loop import Budgets, machine_holdings
from emp_queue.storage import AssetStorage
from emp_queue.testing.fakes.comfyui import FakeComfyUI

from .test_service_health import WORKER, all_completed, until, worker_process

SDXL = "sd_xl_base_1.0.safetensors"
V15 = "v1-5-pruned-emaonly.safetensors"


async def _last_used(queue: JobQueue) -> dict[str, int]:
    infos = [info for info in await queue.workers() if info.worker_id == WORKER]
    held = infos[0].capabilities.models["comfyui"] if infos else None
    return dict(held.last_used or {}) if held else {}


async def test_a_worker_publishes_each_models_last_use_and_placement_orders_by_it(
    job_queue: JobQueue, asset_storage: AssetStorage
) -> None:
    fake = FakeComfyUI()
    clock = iter(range(1_000, 2_000, 100))
    async with fake.running() as url:
        connector = ComfyUIConnector(ComfyUIConfig(url=url, reconnect_backoff_s=0.05))
        async with worker_process(
            job_queue, asset_storage, url, connector, capabilities_refresh_s=0.2, machine_id="here"
        ) as process:
            process.clock = lambda: float(next(clock))
            assert await _last_used(job_queue) == {}  # none run yet: left out of the document
            for checkpoint in (V15, SDXL):
                workflow = workflows.txt2img("a cat", checkpoint=checkpoint, steps=1)
                job = await job_queue.submit(
                    JobSpec(service_required="comfyui", payload={"workflow": workflow})
                )
                await until(lambda job_id=job.id: all_completed(job_queue, [job_id]))
            expected = {V15: 1_000, SDXL: 1_100}

            async def published() -> bool:
                return await _last_used(job_queue) == expected

            await until(published)
            # Registered again with the new document, it still takes jobs in its wake
            # notices (decision 0073): its record keeps its capacity and claim settings.
            record = await job_queue.redis.hgetall(job_queue.keys.worker(WORKER))
            assert record[b"capacity"] == b"1"
            assert record[b"handoff"].startswith(b"[")
            (holding,) = await machine_holdings(job_queue, "here", Budgets(10, 10))
            assert holding.last_used == {V15: 1_000.0, SDXL: 1_100.0}
            # Never used here first (the LoRA, the VAE: by name), then V15, then SDXL.
            assert list(holding.lru_order(holding.installed)) == [
                "detail-tweaker.safetensors",
                "sdxl_vae.safetensors",
                V15,
                SDXL,
            ]
            placed = await machine_holdings(
                job_queue, "here", Budgets(10, 10), {("comfyui", V15): 5_000.0}
            )
            assert placed[0].last_used[V15] == 5_000.0  # loaded by placement since: a use
