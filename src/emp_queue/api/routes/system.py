"""Probes and metrics: ``/health`` and ``/ready`` and ``/version`` need no key."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from emp_queue import __version__
from emp_queue.api.auth import Operator
from emp_queue.api.error_handlers import KEYED_ERRORS, PUBLIC_ERRORS
from emp_queue.api.fleet_metrics import fleet_snapshot
from emp_queue.api.routes.scaling import current_plan
from emp_queue.api.schemas import HealthOut, ReadyOut, VersionOut
from emp_queue.api.state import State

READY_TIMEOUT_S = 1.0

router = APIRouter(tags=["system"])


@router.get("/health", summary="Liveness", responses=PUBLIC_ERRORS)
async def health() -> HealthOut:
    """The process answers (it says nothing about Redis: see /ready)."""
    return HealthOut(status="ok")


@router.get(
    "/ready",
    summary="Readiness",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Redis/Valkey is unreachable"}},
)
async def ready(state: State) -> ReadyOut | JSONResponse:
    """200 when the queue's Redis/Valkey answers a PING within a second, else 503."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await state.queue.redis.ping()
    except (RedisError, OSError, TimeoutError) as error:
        body = ReadyOut(status="unavailable", detail=f"Redis/Valkey did not answer: {error!r}")
        return JSONResponse(body.model_dump(), status.HTTP_503_SERVICE_UNAVAILABLE)
    return ReadyOut(status="ready")


@router.get("/version", summary="Version", responses=PUBLIC_ERRORS)
async def version() -> VersionOut:
    return VersionOut(version=__version__)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        **KEYED_ERRORS,
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
    },
)
async def metrics(_caller: Operator, state: State) -> Response:
    """Queue depth per service and status, live workers, jobs submitted through this replica."""
    state.metrics.scaling.decisions = await current_plan(state)
    state.metrics.observed.snapshot = await fleet_snapshot(
        state.queue, state.machines, state.webhooks
    )
    body = await state.metrics.render(state.queue)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
