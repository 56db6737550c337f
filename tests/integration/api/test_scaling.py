"""``GET /api/scaling`` and the ``emp_scaling_*`` series, over real machine records and jobs."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import MachinePhase, MachineRecord
from emp_queue.models import JobSpec, WorkerCapabilities


async def test_waiting_jobs_and_a_booting_machine_give_the_machines_wanted_with_reasons(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(redis_client, namespace=namespace)
    machines = MachineRegistry(redis_client, queue.keys, queue.events)
    await queue.register_worker(
        "gpu-1-w0", WorkerCapabilities(services=["sim"], pool="gpu"), machine_id="gpu-1"
    )
    await machines.publish(MachineRecord(machine_id="gpu-1", phase=MachinePhase.READY))
    await machines.publish(
        MachineRecord(
            machine_id="gpu-2", phase=MachinePhase.STARTING, pool="gpu", worker_types={"sim": 1}
        )
    )
    await queue.submit_many([JobSpec(service_required="sim", payload={}) for _ in range(40)])
    # A job that needs a model no worker has: model demand.
    await queue.submit(JobSpec(service_required="comfyui", requirements={"models": ["flux"]}))

    body = (await admin.get("/api/scaling")).json()
    entries = {(e["pool"], e["service"]): e for e in body["entries"]}
    sim = entries[("gpu", "sim")]
    # Nothing completed yet: 30 s a job assumed, so a machine does 1/30 jobs/s. 40 arrived in
    # the last 60 s: 0.667/s needs 20 machines to keep up; 40 waiting need 4 more to drain
    # within 300 s.
    assert (sim["machines_ready"], sim["machines_booting"], sim["machines_wanted"]) == (1, 1, 24)
    assert sim["change"] == 22
    assert sim["inputs"]["waiting"] == 40
    assert sim["inputs"]["arrivals_per_s"] == round(40 / 60, 4)
    comfyui = entries[("default", "comfyui")]
    assert comfyui["machines_wanted"] == 1
    assert any("flux" in line for line in comfyui["reasoning"])

    only = (await admin.get("/api/scaling", params={"pool": "gpu"})).json()["entries"]
    assert [(e["pool"], e["service"]) for e in only] == [("gpu", "sim")]

    metrics = (await admin.get("/metrics")).text
    assert 'emp_scaling_machines_wanted{pool="gpu",service="sim"} 24.0' in metrics
    assert 'emp_scaling_machines_booting{pool="gpu",service="sim"} 1.0' in metrics
    assert 'emp_scaling_machines_wanted{pool="default",service="comfyui"} 1.0' in metrics


async def test_demand_lists_waiting_jobs_per_model_most_unmet_first(
    admin: httpx.AsyncClient, redis_client: Redis, namespace: str
) -> None:
    queue = JobQueue(redis_client, namespace=namespace)
    held = {"loaded": ["sdxl"], "installed": ["sdxl"], "fetchable": ["flux"],
            "sizes": {"flux": 12_000_000_000}}  # fmt: skip
    worker = {"services": ["comfyui"], "models": {"comfyui": held}}
    await queue.register_worker("w", WorkerCapabilities.model_validate(worker))
    needing = [["flux"]] * 3 + [["sdxl"]] * 2
    await queue.submit_many(
        [JobSpec(service_required="comfyui", requirements={"models": m}) for m in needing]
    )
    body = (await admin.get("/api/demand")).json()
    assert body == [
        {"service": "comfyui", "model": "flux", "pending": 3, "loaded_on": 0, "installed_on": 0,
         "unmet": 3, "arrivals_per_min_5m": 0.6, "arrivals_per_min_60m": 0.05,
         "size_bytes": 12_000_000_000, "expected_load_s": 6.0, "expected_download_s": 120.0},
        {"service": "comfyui", "model": "sdxl", "pending": 2, "loaded_on": 1, "installed_on": 1,
         "unmet": 1, "arrivals_per_min_5m": 0.4, "arrivals_per_min_60m": 2 / 60,
         "size_bytes": None, "expected_load_s": None, "expected_download_s": None},
    ]  # fmt: skip
