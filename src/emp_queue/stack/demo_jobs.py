"""The demo's mixed batch: ComfyUI workflows, LLM chats, images and simulated renders.

The jobs name only models the local stack's services have (the fakes' defaults), so every
one of them completes; a real fleet runs the same batch.
"""

from __future__ import annotations

from typing import Any

from emp_queue.models import JobSpec

SDXL = "sd_xl_base_1.0.safetensors"


def txt2img_workflow(prompt: str, *, seed: int, steps: int = 12, size: int = 64) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph, in API format."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SDXL}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "emp"}},
    }


PROMPTS = ("a red fox in snow", "a lighthouse at dusk", "a bowl of ramen", "a paper crane")
QUESTIONS = ("Why is the sky blue?", "Name three prime numbers.", "What is a GPU?")


def demo_batch(services: set[str]) -> list[tuple[str, JobSpec]]:
    """(label, job) pairs for the services the stack serves."""
    jobs: list[tuple[str, JobSpec]] = []
    if "comfyui" in services:
        for n, prompt in enumerate(PROMPTS):
            jobs.append((
                f"comfyui: {prompt}",
                JobSpec(
                    service_required="comfyui",
                    priority=60,
                    payload={"workflow": txt2img_workflow(prompt, seed=n + 1)},
                    requirements={"models": [SDXL]},
                ),
            ))  # fmt: skip
    if "ollama" in services:
        for question in QUESTIONS:
            jobs.append((
                f"ollama: {question}",
                JobSpec(
                    service_required="ollama",
                    payload={
                        "model": "llama3.2:1b",
                        "messages": [{"role": "user", "content": question}],
                    },
                    requirements={"models": ["llama3.2:1b"]},
                ),
            ))  # fmt: skip
    if "openai" in services:
        jobs.append((
            "openai: chat",
            JobSpec(
                service_required="openai",
                payload={"model": "gpt-4o-mini",
                         "messages": [{"role": "user", "content": "Write a haiku about queues."}]},
            ),
        ))  # fmt: skip
        jobs.append((
            "openai: image",
            JobSpec(
                service_required="openai",
                payload={"operation": "images", "model": "gpt-image-1",
                         "prompt": "a tidy server room", "size": "256x256"},
            ),
        ))  # fmt: skip
    if "simulation" in services:
        for n in range(4):
            jobs.append((
                f"simulation: render {n + 1}",
                JobSpec(
                    service_required="simulation",
                    payload={"steps": 10 + 5 * n, "step_delay_s": 0.05,
                             "image": {"width": 64, "height": 64}, "seed": f"demo-{n}"},
                ),
            ))  # fmt: skip
    return jobs
