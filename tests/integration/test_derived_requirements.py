"""Requirements read from the payload at submit: they route the job and explain shows them."""

from __future__ import annotations

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities

WORKFLOW = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux.safetensors"}},
    "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "ink.safetensors"}},
    "3": {"class_type": "KSampler", "inputs": {"model": ["2", 0]}},
}


def comfy(*installed: str) -> WorkerCapabilities:
    return WorkerCapabilities.model_validate(
        {"services": ["comfyui"], "models": {"comfyui": {"installed": list(installed)}}}
    )


async def test_a_workflow_goes_only_to_a_worker_with_its_model_files(job_queue: JobQueue) -> None:
    await job_queue.register_worker("bare", comfy("sdxl.safetensors"))
    await job_queue.register_worker("half", comfy("flux.safetensors"))
    job = await job_queue.submit(
        JobSpec(service_required="comfyui", payload={"workflow": WORKFLOW}, customer_id="acme")
    )
    assert job.requirements["models"] == ["flux.safetensors", "ink.safetensors"]
    assert job.status is JobStatus.UNWORKABLE

    explanation = await job_queue.explain(job.id)
    assert explanation.derived_requirements["models"] == ["flux.safetensors", "ink.safetensors"]
    assert explanation.derived_requirements["nodes"] == [
        "CheckpointLoaderSimple",
        "KSampler",
        "LoraLoader",
    ]
    assert explanation.nearest_miss is not None
    assert "ink.safetensors" in " ".join(explanation.nearest_miss[1])

    await job_queue.register_worker("full", comfy("flux.safetensors", "ink.safetensors"))
    assert await job_queue.claim("bare") == []
    assert await job_queue.claim("half") == []
    [claimed] = await job_queue.claim("full")
    assert claimed.job.id == job.id


async def test_explicit_and_derived_models_merge_and_a_job_can_opt_out(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("llm", WorkerCapabilities(services=["ollama"]))
    merged = await job_queue.submit(
        JobSpec(
            service_required="ollama",
            payload={"model": "llama3", "prompt": "hi"},
            requirements={"models": ["nomic-embed-text:latest"]},
        )
    )
    assert merged.requirements == {"models": ["llama3:latest", "nomic-embed-text:latest"]}
    assert merged.status is JobStatus.UNWORKABLE

    opted_out = await job_queue.submit(
        JobSpec(
            service_required="ollama",
            payload={"model": "llama3", "prompt": "hi"},
            requirements={"derive": False},
        )
    )
    assert opted_out.requirements == {}
    assert (await job_queue.explain(opted_out.id)).derived_requirements == {}
    [claimed] = await job_queue.claim("llm")
    assert claimed.job.id == opted_out.id
