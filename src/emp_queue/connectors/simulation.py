"""``simulation``: deterministic steps, delays, progress, outputs and injected failures.

For demos, tests and benchmarks. The payload drives it (every field optional)::

    {"steps": 10, "step_delay_s": 0.05,          # how long the job takes
     "image": {"width": 64, "height": 64},        # store a PNG output (its colour from "seed")
     "text": "...",                               # echoed in the result
     "seed": "anything",                          # same seed, same result
     "fail": {"at_step": 3, "failure_class": "service_fault", "message": "..."},
     "fail_attempts": 1}                          # fail only the first N attempts (flaky jobs)

With ``steps: 0`` (or the connector's ``EMP_SIMULATION_STEP_DELAY_S=0``) a job finishes
without sleeping, which is what the worker throughput benchmark measures.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from emp_queue.connectors.base import (
    Connector,
    ConnectorConfig,
    Discovery,
    RunningJob,
    job_fault,
    parse_payload,
)
from emp_queue.errors import JobFailedError
from emp_queue.media import colour_for, solid_png
from emp_queue.models import FailureClass, ServiceModels


class SimulationConfig(ConnectorConfig):
    model_config = SettingsConfigDict(env_prefix="EMP_SIMULATION_", extra="forbid", frozen=True)

    models: list[str] = Field(default_factory=lambda: ["sim-small", "sim-large"])
    """Models this simulated service claims to have installed."""
    step_delay_s: float | None = Field(default=None, ge=0, le=60)
    """Overrides every job's ``step_delay_s`` when set (0 = no sleeping)."""


class InjectedFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_step: int = Field(default=0, ge=0)
    failure_class: Literal["job_fault", "service_fault", "worker_fault"] = "service_fault"
    message: str = "injected failure"


class ImageOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(default=64, ge=1, le=2048)
    height: int = Field(default=64, ge=1, le=2048)


class SimulationPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    steps: int = Field(default=5, ge=0, le=100_000)
    step_delay_s: float = Field(default=0.05, ge=0, le=60)
    image: ImageOutput | None = None
    text: str | None = None
    seed: str | None = None
    model: str | None = None
    fail: InjectedFailure | None = None
    fail_attempts: int | None = Field(default=None, ge=1)


class SimulationConnector(Connector):
    kind = "simulation"
    Config = SimulationConfig
    config: SimulationConfig

    async def discover(self) -> Discovery:
        models = list(self.config.models)
        return Discovery(
            models=ServiceModels(installed=models, loaded=models[:1]), version="simulation-1"
        )

    async def run(self, job: RunningJob) -> dict[str, Any]:
        spec = parse_payload(SimulationPayload, job.payload, "simulation")
        if spec.model is not None and spec.model not in self.config.models:
            raise job_fault(
                f"model {spec.model!r} is not installed; installed: {', '.join(self.config.models)}"
            )
        delay = (
            self.config.step_delay_s if self.config.step_delay_s is not None else spec.step_delay_s
        )
        failing = spec.fail is not None and (
            spec.fail_attempts is None or job.attempt <= spec.fail_attempts
        )
        await job.progress(0.0, "started")
        for step in range(1, spec.steps + 1):
            if failing and spec.fail is not None and step > spec.fail.at_step:
                self._fail(spec.fail)
            if delay:
                await asyncio.sleep(delay)
            await job.progress(step / spec.steps, f"step {step}/{spec.steps}")
        if failing and spec.fail is not None:
            self._fail(spec.fail)
        return await self._result(job, spec)

    @staticmethod
    def _fail(failure: InjectedFailure) -> None:
        raise JobFailedError(failure.message, failure_class=FailureClass(failure.failure_class))

    async def _result(self, job: RunningJob, spec: SimulationPayload) -> dict[str, Any]:
        seed = spec.seed if spec.seed is not None else json.dumps(job.payload, sort_keys=True)
        result: dict[str, Any] = {
            "steps": spec.steps,
            "fingerprint": hashlib.sha256(seed.encode()).hexdigest()[:16],
        }
        if spec.text is not None:
            result["text"] = spec.text
        if spec.image is not None:
            png = solid_png(spec.image.width, spec.image.height, colour_for(seed))
            asset = await job.store(png, content_type="image/png", filename="image.png")
            result["outputs"] = [asset.as_result()]
        return result
