"""A fake AUTOMATIC1111 / Forge web UI API: txt2img, img2img, progress, interrupt, models,
checkpoint switch (``POST /sdapi/v1/options``; an unknown name is A1111's 500 ``RuntimeError``
``model '<name>' not found``), unload-checkpoint and reload-checkpoint (``{}``), and
refresh-checkpoints (``null``). With ``models_dir`` the checkpoints are the ``.safetensors`` and
``.ckpt`` files under that folder (names relative to it, as A1111 titles them), listed at start
and again only at refresh-checkpoints — A1111 does not notice a file added or removed before.

One generation runs at a time (others wait, as in A1111's queue lock); ``step_delay_s`` per
sampling step makes ``/sdapi/v1/progress`` observable. ``POST /sdapi/v1/interrupt`` ends the
running generation early — A1111 still answers 200 with the image it had. Tests read what
clients did in :attr:`FakeA1111.interrupts` (interrupt calls), :attr:`FakeA1111.switches`
(checkpoint changes), :attr:`FakeA1111.weights_loaded` (after unload/reload) and
:attr:`FakeA1111.progress_polls`. Failures for tests:
:meth:`FakeA1111.fail_next` (an A1111 error body, e.g. CUDA out of memory).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from emp_queue.media import colour_for, solid_png
from emp_queue.testing.fakes.server import FakeService

JsonDict = dict[str, Any]
DEFAULT_CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
MAX_IMAGE_SIDE = 2048


@dataclass(frozen=True)
class A1111Failure:
    status: int
    error: str
    errors: str


def _error(status: int, error: str, detail: str = "", errors: str = "") -> JSONResponse:
    body = {"error": error, "detail": detail, "body": "", "errors": errors}
    return JSONResponse(body, status_code=status)


def _scan(folder: Path) -> list[str]:
    """The checkpoint files under ``folder``, by their path relative to it (A1111's names), in
    A1111's order (its natural sort ignores case)."""
    return sorted(
        (
            path.relative_to(folder).as_posix()
            for path in folder.rglob("*")
            if path.suffix in CHECKPOINT_SUFFIXES and path.is_file()
        ),
        key=str.lower,
    )


def _title(filename: str) -> str:
    return f"{filename} [{colour_for(filename)[0]:02x}c0ffee]"


class FakeA1111(FakeService):
    """State and control of the fake; ``app()`` serves it, ``running()`` runs it on loopback."""

    service_name = "a1111"

    def __init__(
        self,
        *,
        checkpoints: Sequence[str] = DEFAULT_CHECKPOINTS,
        step_delay_s: float = 0.0,
        model_switch_delay_s: float = 0.0,
        models_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.models_dir = models_dir
        self.checkpoints = _scan(models_dir) if models_dir is not None else list(checkpoints)
        self.current_checkpoint = self.checkpoints[0] if self.checkpoints else ""
        self.refreshes = 0
        self.step_delay_s = step_delay_s
        self.model_switch_delay_s = model_switch_delay_s
        self.generations = 0
        self.interrupts = 0
        self.switches: list[str] = []
        self.weights_loaded = True
        """Whether the selected checkpoint's weights are in (GPU) memory: an unload-checkpoint
        takes them out, a reload-checkpoint, a switch or a generation puts them back. The API
        shows it nowhere (``/options`` keeps naming the checkpoint), as in A1111."""
        self.unloads = 0
        self.reloads = 0
        self.received_images: list[bytes] = []
        """The decoded ``init_images`` and ``mask`` of every img2img request, in order."""
        self.progress_polls = 0
        self._failures: list[A1111Failure] = []
        self._lock = asyncio.Lock()
        self._job = ""
        self._step = 0
        self._steps = 0
        self._interrupted = False

    def fail_next(
        self,
        status: int = 500,
        error: str = "OutOfMemoryError",
        errors: str = "CUDA out of memory. Tried to allocate 2.00 GiB",
    ) -> None:
        """Answer the next generation request with an A1111 error body."""
        self._failures.append(A1111Failure(status, error, errors))

    def add_routes(self, app: FastAPI) -> None:
        router = APIRouter(prefix="/sdapi/v1")
        router.add_api_route("/txt2img", self._txt2img, methods=["POST"])
        router.add_api_route("/img2img", self._img2img, methods=["POST"])
        router.add_api_route("/progress", self._progress, methods=["GET"])
        router.add_api_route("/interrupt", self._interrupt, methods=["POST"])
        router.add_api_route("/sd-models", self._sd_models, methods=["GET"])
        router.add_api_route("/options", self._get_options, methods=["GET"])
        router.add_api_route("/options", self._set_options, methods=["POST"])
        router.add_api_route("/unload-checkpoint", self._unload, methods=["POST"])
        router.add_api_route("/reload-checkpoint", self._reload, methods=["POST"])
        router.add_api_route("/refresh-checkpoints", self._refresh, methods=["POST"])
        app.include_router(router)

    async def _txt2img(self, request: Request) -> Response:
        return await self._generate(await request.json(), "txt2img")

    async def _img2img(self, request: Request) -> Response:
        body = await request.json()
        if not body.get("init_images"):
            return _error(404, "HTTPException", "Init image not found")
        sent = [*body["init_images"], *([body["mask"]] if body.get("mask") else [])]
        self.received_images.extend(base64.b64decode(image) for image in sent)
        return await self._generate(body, "img2img")

    async def _generate(self, body: JsonDict, kind: str) -> Response:
        if self._failures:
            failure = self._failures.pop(0)
            return _error(failure.status, failure.error, errors=failure.errors)
        override = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        checkpoint = self._find(override) if override else self.current_checkpoint
        if checkpoint is None:
            return _error(500, "RuntimeError", errors=f"Invalid checkpoint: {override}")
        width = min(MAX_IMAGE_SIDE, max(8, int(body.get("width", 512))))
        height = min(MAX_IMAGE_SIDE, max(8, int(body.get("height", 512))))
        count = max(1, int(body.get("batch_size", 1))) * max(1, int(body.get("n_iter", 1)))
        async with self._lock:
            self.weights_loaded = True  # A1111 loads the unloaded weights before sampling
            self._job, self._step, self._steps = f"{kind}-{self.generations}", 0, 0
            self._interrupted = False
            self._steps = max(1, int(body.get("steps", 20)))
            while self._step < self._steps and not self._interrupted:
                await asyncio.sleep(self.step_delay_s)
                self._step += 1
            self.generations += 1
            self._job = ""
        seed = int(body.get("seed", -1))
        seed = seed if seed >= 0 else int(time.time())
        prompt = str(body.get("prompt", ""))
        images = [
            base64.b64encode(solid_png(width, height, colour_for(f"{prompt}:{seed}:{i}"))).decode()
            for i in range(count)
        ]
        info = {
            "prompt": prompt,
            "seed": seed,
            "all_seeds": [seed + i for i in range(count)],
            "width": width,
            "height": height,
            "sd_model_name": checkpoint.rsplit(".", 1)[0],
            "steps": self._steps,
        }
        parameters = {k: v for k, v in body.items() if k != "init_images"}
        return JSONResponse({"images": images, "parameters": parameters, "info": json.dumps(info)})

    async def _progress(self) -> JsonDict:
        self.progress_polls += 1
        running = bool(self._job)
        fraction = self._step / self._steps if running and self._steps else 0.0
        eta = (self._steps - self._step) * self.step_delay_s if running else 0.0
        return {
            "progress": fraction,
            "eta_relative": eta,
            "state": {
                "skipped": False,
                "interrupted": self._interrupted,
                "job": self._job,
                "job_count": 1 if running else 0,
                "job_timestamp": "20250101000000",
                "job_no": 0,
                "sampling_step": self._step if running else 0,
                "sampling_steps": self._steps if running else 0,
            },
            "current_image": None,
            "textinfo": None,
        }

    async def _interrupt(self) -> Response:
        self.interrupts += 1
        if self._job:
            self._interrupted = True
        return JSONResponse(None)

    async def _sd_models(self) -> list[JsonDict]:
        return [
            {
                "title": _title(name),
                "model_name": name.rsplit(".", 1)[0],
                "hash": _title(name)[-9:-1],
                "sha256": None,
                "filename": str((self.models_dir or Path("/models")) / name),
                "config": None,
            }
            for name in self.checkpoints
        ]

    async def _get_options(self) -> JsonDict:
        return {
            "sd_model_checkpoint": _title(self.current_checkpoint),
            "CLIP_stop_at_last_layers": 1,
            "samples_format": "png",
        }

    async def _set_options(self, request: Request) -> Response:
        wanted = (await request.json()).get("sd_model_checkpoint")
        if wanted is not None:
            found = self._find(str(wanted))
            if found is None:
                return _error(500, "RuntimeError", errors=f"model {wanted!r} not found")
            if found != self.current_checkpoint:
                async with self._lock:
                    await asyncio.sleep(self.model_switch_delay_s)
                    self.current_checkpoint = found
                    self.switches.append(found)
                    self.weights_loaded = True
        return JSONResponse(None)

    async def _unload(self) -> JsonDict:
        """``POST /sdapi/v1/unload-checkpoint``: weights out of memory; answers ``{}``."""
        async with self._lock:
            self.unloads += 1
            self.weights_loaded = False
        return {}

    async def _reload(self) -> JsonDict:
        """``POST /sdapi/v1/reload-checkpoint``: the selected checkpoint back in memory."""
        async with self._lock:
            await asyncio.sleep(self.model_switch_delay_s if not self.weights_loaded else 0)
            self.reloads += 1
            self.weights_loaded = True
        return {}

    async def _refresh(self) -> Response:
        """``POST /sdapi/v1/refresh-checkpoints``: re-list the models folder; answers null."""
        self.refreshes += 1
        if self.models_dir is not None:
            self.checkpoints = _scan(self.models_dir)
        return JSONResponse(None)

    def _find(self, name: str) -> str | None:
        """A checkpoint by file name, name without extension, or title (as A1111 matches)."""
        for checkpoint in self.checkpoints:
            if name in (checkpoint, checkpoint.rsplit(".", 1)[0], _title(checkpoint)):
                return checkpoint
        return None
