"""ComfyUI node classes as a requirement: published compactly, tested by the matcher."""

from __future__ import annotations

import json

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.connectors.comfyui import ComfyUIConfig, ComfyUIConnector
from emp_queue.core.matching import capabilities_fingerprint
from emp_queue.models import NodeClasses
from emp_queue.testing.fakes.comfyui import FakeComfyUI

STOCK = ["CheckpointLoaderSimple", "KSampler", "SaveImage", "VAEDecode"]
WORKFLOW = {
    "1": {"class_type": "IPAdapterApply", "inputs": {}},
    "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0]}},
}


def comfy(*nodes: str) -> WorkerCapabilities:
    return WorkerCapabilities(services=["comfyui"], nodes=NodeClasses.of(nodes))


async def test_a_workflow_needing_a_custom_node_goes_only_to_a_worker_that_has_it(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("stock", comfy(*STOCK))
    job = await job_queue.submit(
        JobSpec(service_required="comfyui", payload={"workflow": WORKFLOW})
    )

    assert job.requirements["nodes"] == ["IPAdapterApply", "KSampler"]
    assert job.status is JobStatus.UNWORKABLE
    explanation = await job_queue.explain(job.id)
    assert explanation.nearest_miss == ("stock", ["node classes not installed: IPAdapterApply"])

    await job_queue.register_worker("custom", comfy(*STOCK, "IPAdapterApply"))
    assert await job_queue.claim("stock") == []
    [claimed] = await job_queue.claim("custom")
    assert claimed.job.id == job.id


async def test_an_explicit_nodes_requirement_is_validated_and_matched(job_queue: JobQueue) -> None:
    await job_queue.register_worker("stock", comfy(*STOCK))
    job = await job_queue.submit(
        JobSpec(service_required="comfyui", payload={}, requirements={"nodes": ["SaveImage"]})
    )

    [claimed] = await job_queue.claim("stock")
    assert claimed.job.id == job.id


async def test_the_capabilities_carry_a_fingerprint_and_a_count_not_the_names(
    job_queue: JobQueue,
) -> None:
    capabilities = comfy(*STOCK)
    await job_queue.register_worker("stock", capabilities)

    raw = await job_queue.redis.get(
        job_queue.keys.capabilities(capabilities_fingerprint(capabilities))
    )
    document = json.loads(raw)
    members = await job_queue.redis.smembers(
        job_queue.keys.node_classes(document["nodes"]["fingerprint"])
    )
    assert document["nodes"] == {"fingerprint": NodeClasses.of(STOCK).fingerprint, "count": 4}
    assert sorted(m.decode() for m in members) == STOCK


async def test_comfyui_discovery_publishes_every_node_class(fake_comfyui: FakeComfyUI) -> None:
    connector = ComfyUIConnector(ComfyUIConfig(url=fake_comfyui.url))
    await connector.start()
    try:
        found = await connector.discover()
    finally:
        await connector.close()

    assert len(found.node_classes) == found.details["node_classes"] > 0
    assert "KSampler" in found.node_classes
