"""Placement executors that load and unload models through the services' own HTTP APIs.

**ComfyUI** has no "load this model" call: it loads a checkpoint when a prompt that uses it
runs, and keeps it until memory is needed or ``POST /free`` asks it to let go.
:class:`ComfyUIWarmup` loads by queueing a warm-up prompt — the checkpoint's loader, one
sampling step at 64x64 (a fresh seed, so ComfyUI's cache cannot skip the sampler) and a
``PreviewImage`` output (nothing saved) — and waits for its ``/history`` entry. It unloads with
``POST /free {"unload_models": true, "free_memory": true}``, which unloads *every* model of
that ComfyUI (it has no per-model unload), once it is idle. Only checkpoints are warmed up: a
LoRA or VAE name makes ComfyUI refuse the prompt (``value_not_in_list``), reported as not done.

**AUTOMATIC1111 / Forge** holds one checkpoint. :class:`A1111Checkpoints` loads by selecting it
(``POST /sdapi/v1/options {"sd_model_checkpoint": <title>}``, which switches synchronously), or
when it is already the selected one by ``POST /sdapi/v1/reload-checkpoint`` (weights back on
the GPU after an unload); it unloads the selected checkpoint with
``POST /sdapi/v1/unload-checkpoint``. A model that is not the selected one is not loaded, so
unloading it is done at once.

What the workers then report: a ComfyUI worker reads the newest ``/history`` entry (any
client's prompt: the warm-up's too) to tell what is loaded; an A1111 worker reads the selected
checkpoint from ``/sdapi/v1/options``, which an unload does not change — A1111 says nowhere
whether the weights are on the GPU. See docs/machine.md, "Predictive placement".
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from emp_queue.connectors.a1111 import checkpoint_name, same_checkpoint
from emp_queue.http_tls import tls_context
from emp_queue.machine.placement import Action, Outcome, PlacementDecision

Progress = Callable[[float], Coroutine[Any, Any, None]]

WARMUP_SIDE = 64
"""Width and height of the warm-up image: the smallest latent worth sampling."""


def warmup_prompt(checkpoint: str, seed: int) -> dict[str, Any]:
    """A minimal API-format graph that loads ``checkpoint`` and samples one step into a preview."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "3": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": WARMUP_SIDE, "height": WARMUP_SIDE, "batch_size": 1},
        },
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": seed,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "denoise": 1.0,
            },
        },
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }


def _refusal(response: httpx.Response) -> str:
    """ComfyUI's 400 body in one line: ``type: message`` and the first node errors."""
    try:
        body = response.json()
    except ValueError:
        return f"ComfyUI answered {response.status_code}: {response.text[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"ComfyUI answered {response.status_code}: {response.text[:200]}"
    parts = [f"{error.get('type', 'unknown')}: {error.get('message', '')}"]
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
    for node_id, node in (node_errors or {}).items():
        for problem in (node.get("errors") or [])[:2] if isinstance(node, dict) else []:
            parts.append(f"node {node_id}: {problem.get('message')}: {problem.get('details')}")
    return "ComfyUI refused the warm-up prompt (" + "; ".join(parts)[:400] + ")"


def _failure(entry: dict[str, Any]) -> str:
    """Why a finished prompt did not succeed, from its history entry's messages."""
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    for message in (status or {}).get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            data = message[1] if isinstance(message[1], dict) else {}
            return f"{data.get('exception_type', 'error')}: {data.get('exception_message', '')}"
    return f"status {(status or {}).get('status_str', 'unknown')}"


class ComfyUIWarmup:
    """Loads a ComfyUI checkpoint with a warm-up prompt; unloads with ``POST /free``."""

    service = "comfyui"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 600.0,
        poll_s: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = headers or {}
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.client_id = f"emp-placement-{uuid.uuid4().hex[:12]}"
        """No socket opens with this id, so ComfyUI's messages about warm-ups go nowhere."""

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.service == self.service and decision.action in (Action.LOAD, Action.UNLOAD)

    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        async with httpx.AsyncClient(
            base_url=self.url,
            headers=self.headers,
            timeout=60.0,
            trust_env=False,
            verify=tls_context(trust_env=False),
        ) as client:
            if decision.action is Action.UNLOAD:
                response = await client.post(
                    "/free", json={"unload_models": True, "free_memory": True}
                )
                if response.status_code != 200:
                    return Outcome(False, f"ComfyUI answered {response.status_code} to POST /free")
                return Outcome(
                    True,
                    f"POST {self.url}/free: ComfyUI unloads every model it holds (it has no "
                    "per-model unload) once idle",
                )
            return await self._warm_up(client, decision.model, progress)

    async def _warm_up(self, client: httpx.AsyncClient, model: str, progress: Progress) -> Outcome:
        prompt_id = str(uuid.uuid4())
        body = {
            "prompt": warmup_prompt(model, random.randrange(2**32)),
            "client_id": self.client_id,
            "prompt_id": prompt_id,
        }
        response = await client.post("/prompt", json=body)
        if response.status_code == 400:
            return Outcome(False, _refusal(response))
        if response.status_code != 200:
            return Outcome(False, f"ComfyUI answered {response.status_code}: {response.text[:200]}")
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            history = (await client.get(f"/history/{prompt_id}")).json()
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if isinstance(entry, dict):
                if (entry.get("status") or {}).get("status_str") == "success":
                    await progress(1.0)
                    return Outcome(
                        True, f"loaded by warm-up prompt {prompt_id} (1 step, 64x64 preview)"
                    )
                return Outcome(False, f"the warm-up prompt {prompt_id} failed: {_failure(entry)}")
            await asyncio.sleep(self.poll_s)
        return Outcome(
            False, f"the warm-up prompt {prompt_id} did not finish in {self.timeout_s:g} s"
        )


class A1111Checkpoints:
    """Selects (loads) and unloads AUTOMATIC1111 / Forge checkpoints through its API."""

    service = "a1111"

    def __init__(self, url: str, *, timeout_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def takes(self, decision: PlacementDecision) -> bool:
        return decision.service == self.service and decision.action in (Action.LOAD, Action.UNLOAD)

    async def carry_out(self, decision: PlacementDecision, progress: Progress) -> Outcome:
        async with httpx.AsyncClient(
            base_url=f"{self.url}/sdapi/v1",
            timeout=self.timeout_s,
            trust_env=False,
            verify=tls_context(trust_env=False),
        ) as client:
            options = await client.get("/options")
            if options.status_code != 200:
                return Outcome(False, f"a1111 answered {options.status_code} to GET /options")
            current = str(options.json().get("sd_model_checkpoint") or "")
            selected = bool(current) and same_checkpoint(decision.model, current)
            if decision.action is Action.UNLOAD:
                if not selected:
                    return Outcome(
                        True, f"not loaded: the selected checkpoint is {current or 'none'}"
                    )
                return await self._post(client, "/unload-checkpoint", None, "unloaded")
            if selected:
                return await self._post(client, "/reload-checkpoint", None, "reloaded")
            models = await client.get("/sd-models")
            if models.status_code != 200:
                return Outcome(False, f"a1111 answered {models.status_code} to GET /sd-models")
            titles = [str(m.get("title")) for m in models.json() if isinstance(m, dict)]
            title = next((t for t in titles if same_checkpoint(decision.model, t)), None)
            if title is None:
                names = ", ".join(checkpoint_name(t) for t in titles) or "none"
                return Outcome(False, f"not a checkpoint of this a1111; installed: {names}")
            done = await self._post(client, "/options", {"sd_model_checkpoint": title}, "loaded")
            if done.done:
                await progress(1.0)
            return done

    async def _post(
        self, client: httpx.AsyncClient, path: str, body: dict[str, Any] | None, what: str
    ) -> Outcome:
        response = await client.post(path, json=body)
        if not response.is_success:
            return Outcome(
                False,
                f"a1111 answered {response.status_code} to POST {path}: {_a1111(response)}",
            )
        return Outcome(True, f"{what} through POST {self.url}/sdapi/v1{path}")


def _a1111(response: httpx.Response) -> str:
    """A1111's error body (``{error, detail, body, errors}``) in a few words."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return f"{body.get('error', '')}: {body.get('errors') or body.get('detail') or ''}"[:300]
    return str(body)[:200]
