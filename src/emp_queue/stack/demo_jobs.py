"""The demo's mixed batch: ComfyUI workflows, LLM chats, images and simulated renders.

The jobs name only models the local stack's services have (the fakes' defaults), so every
one of them completes; a real fleet runs the same batch.
"""

from __future__ import annotations

from typing import Any

from emp_queue.connectors.comfyui_workflows import txt2img
from emp_queue.models import JobSpec

SDXL = "sd_xl_base_1.0.safetensors"


def txt2img_workflow(prompt: str, *, seed: int, steps: int = 12, size: int = 64) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph on SDXL, small enough for the fake to be quick."""
    return txt2img(prompt, checkpoint=SDXL, seed=seed, steps=steps, size=size)


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
