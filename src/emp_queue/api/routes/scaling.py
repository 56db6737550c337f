"""``GET /api/scaling``: machines wanted per pool and service, with the reasoning (operator keys);
``GET /api/demand``: waiting jobs per model and the workers holding each (placement).

For KEDA (metrics-api trigger, or the Prometheus series ``emp_scaling_machines_wanted``), a
rented-GPU script or a person: see docs/deploy.md.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from emp_queue.api.auth import Operator
from emp_queue.api.error_handlers import KEYED_ERRORS
from emp_queue.api.state import ApiState, State
from emp_queue.core.demand import model_demand
from emp_queue.core.scaling import ScalingDecision, ScalingPolicy, scaling_plan
from emp_queue.models import NAME_PATTERN

router = APIRouter(prefix="/api", tags=["fleet"], responses=KEYED_ERRORS)


class ScalingEntryOut(BaseModel):
    pool: str
    service: str
    machines_ready: int = Field(description="Online machines of the pool serving the service.")
    machines_booting: int = Field(description="Machines started but not ready yet.")
    machines_wanted: int = Field(description="Machines the pool should run for the service now.")
    change: int = Field(description="wanted - ready - booting: machines to add (or to let go).")
    inputs: dict[str, Any] = Field(description="The figures the decision was made from.")
    reasoning: list[str] = Field(description="How the figures led to the decision.")


class ScalingOut(BaseModel):
    generated_at: int = Field(description="Milliseconds since the epoch.")
    window_s: float
    drain_s: float
    entries: list[ScalingEntryOut]


async def current_plan(state: ApiState) -> list[ScalingDecision]:
    settings = state.settings
    policy = ScalingPolicy(
        window_s=settings.scaling_window_s,
        drain_s=settings.scaling_drain_s,
        max_machines=settings.scaling_max_machines,
    )
    return await scaling_plan(state.queue, await state.machines.all(), policy)


@router.get("/scaling", summary="Machines wanted per pool and service")
async def scaling(
    _caller: Operator,
    state: State,
    pool: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    service: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
) -> ScalingOut:
    """From queue depth, arrival rate, measured per-machine throughput, machines still booting
    and jobs that need a capability no live worker has. Filter with ``pool`` and ``service``."""
    decisions = [
        d
        for d in await current_plan(state)
        if (pool is None or d.pool == pool) and (service is None or d.service == service)
    ]
    return ScalingOut(
        generated_at=int(time.time() * 1000),
        window_s=state.settings.scaling_window_s,
        drain_s=state.settings.scaling_drain_s,
        entries=[
            ScalingEntryOut(
                pool=d.pool,
                service=d.service,
                machines_ready=d.machines_ready,
                machines_booting=d.machines_booting,
                machines_wanted=d.machines_wanted,
                change=d.change,
                inputs=d.inputs,
                reasoning=d.reasoning,
            )
            for d in decisions
        ],
    )


class ModelDemandOut(BaseModel):
    service: str
    model: str
    pending: int = Field(description="Waiting jobs of the service that need the model.")
    loaded_on: int = Field(description="Live workers with the model loaded (in GPU memory).")
    installed_on: int = Field(description="Live workers with the model on disk.")
    unmet: int = Field(description="pending - loaded_on, at least 0: what placement ranks by.")
    arrivals_per_min_5m: float = Field(
        description="Jobs needing the model submitted per minute, over the last 5 minutes."
    )
    arrivals_per_min_60m: float = Field(description="The same over the last 60 minutes.")
    size_bytes: int | None = Field(description="The model's size as workers report it.")
    expected_load_s: float | None = Field(
        description="Estimated load from disk into GPU memory (size / 2 GB/s)."
    )
    expected_download_s: float | None = Field(
        description="Estimated download onto disk (size / 100 MB/s)."
    )


@router.get("/demand", summary="Waiting and arriving jobs per model, and the workers holding each")
async def demand(_caller: Operator, state: State) -> list[ModelDemandOut]:
    """Per service and model, most unmet first: what a machine agent should pre-download or
    pre-load. Jobs no live worker can run (``unworkable``) are not counted here; they show in
    ``GET /api/scaling``."""
    return [
        ModelDemandOut(
            service=d.service,
            model=d.model,
            pending=d.pending,
            loaded_on=d.loaded_on,
            installed_on=d.installed_on,
            unmet=d.unmet,
            arrivals_per_min_5m=d.arrivals_per_min_5m,
            arrivals_per_min_60m=d.arrivals_per_min_60m,
            size_bytes=d.size_bytes,
            expected_load_s=d.expected_load_s,
            expected_download_s=d.expected_download_s,
        )
        for d in await model_demand(state.queue)
    ]
