"""``create_app``: the API as a FastAPI app over one Redis client, with no global state.

Everything an app instance shares lives on ``app.state.emp`` (an :class:`ApiState`); the
background sweep belongs to the app's lifespan and stops with it. Any number of replicas can
serve one Redis: they keep nothing between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.routing import BaseRoute

from emp_queue import __version__
from emp_queue.api.answer_deadline import AnswerDeadlineMiddleware
from emp_queue.api.audit import AuditLog, AuditMiddleware
from emp_queue.api.auth import Authenticator
from emp_queue.api.body_limit import BodyLimitMiddleware
from emp_queue.api.error_handlers import install_error_handlers
from emp_queue.api.event_hub import EventHub
from emp_queue.api.key_store import ApiKeyStore
from emp_queue.api.metrics import ApiMetrics
from emp_queue.api.request_metrics import RequestMetricsMiddleware
from emp_queue.api.routes import (
    assets,
    audit,
    bulk,
    customers,
    deletion,
    events,
    fleet,
    jobs,
    machines,
    queue_control,
    scaling,
    schedules,
    stats,
    system,
    uploads,
    webhooks,
    websockets,
    workflows,
)
from emp_queue.api.services import ServiceCatalog
from emp_queue.api.settings import ApiSettings
from emp_queue.api.state import ApiState
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.schedules import ScheduleRunner, ScheduleStore
from emp_queue.core.settings import CoreSettings
from emp_queue.loops import LoopGroup, stopped_within
from emp_queue.monitor import mount_monitor
from emp_queue.storage import build_asset_storage
from emp_queue.webhooks.dispatcher import WebhookDispatcher
from emp_queue.webhooks.guard import TargetGuard
from emp_queue.webhooks.store import WebhookStore

if TYPE_CHECKING:
    from emp_queue.telemetry.tracing import JobTracing

log = structlog.get_logger(__name__)

LOOP_STOP_TIMEOUT_S = 5.0
"""How long shutdown waits for the background loops (the sweep, the webhook dispatcher's
batch) to see the flag, and again after cancelling them, before abandoning them: SIGTERM
never hangs on a swallowed cancellation."""

DESCRIPTION = """\
Submit AI jobs, follow them live and operate the fleet of workers that runs them.
Every route but `/health`, `/ready` and `/version` needs an API key
(`Authorization: Bearer <key>`, created with `emp keys create`). See docs/api.md.
"""


async def sweep_forever(queue: JobQueue, interval_s: float, stopping: asyncio.Event) -> None:
    """Run the queue's housekeeping every ``interval_s`` until ``stopping``; a Redis outage is
    logged, not fatal."""
    while not stopping.is_set():
        try:
            report = await queue.sweep()
        except RedisError as error:
            log.warning("api_sweep_failed", error=str(error))
        else:
            if report.total:
                log.info("api_sweep", **vars(report))
        await stopped_within(stopping, interval_s)


ROUTERS = (
    jobs,
    events,
    workflows,
    fleet,
    scaling,
    machines,
    stats,
    system,
    websockets,
    assets,
    uploads,
    audit,
    bulk,
    webhooks,
    customers,
    deletion,
    queue_control,
    schedules,
)
API_ROUTES: tuple[BaseRoute, ...] = tuple(
    route for module in ROUTERS for route in module.router.routes
)
"""Every route of the API, in matching order. The route objects are built when their modules
are imported (FastAPI validates and compiles each route's parameters then) and every app adds
the same objects: ``include_router`` would rebuild all of them lazily in each app, about 4 ms of
CPU per route and 0.4 s per app, on the first request that walks past them (decision 0050)."""


def build_state(
    settings: ApiSettings,
    core_settings: CoreSettings,
    redis: Redis,
    tracing: JobTracing | None = None,
) -> ApiState:
    queue = JobQueue.from_settings(redis, core_settings)
    return ApiState(
        settings=settings,
        queue=queue,
        machines=MachineRegistry(
            redis, queue.keys, queue.events, timeout_s=settings.machine_timeout_s
        ),
        key_store=ApiKeyStore(redis, queue.keys),
        authenticator=Authenticator(redis, queue.keys, settings),
        metrics=ApiMetrics(per_customer=settings.metrics_per_customer),
        services=ServiceCatalog(queue, settings.services),
        hub=EventHub(queue.events),
        webhooks=WebhookStore(redis, queue.keys, retention_s=settings.webhooks.retention_s),
        webhook_guard=TargetGuard(settings.webhooks.allow_hosts),
        storage=build_asset_storage(settings.storage),
        tracing=tracing,
    )


def create_app(
    settings: ApiSettings,
    core_settings: CoreSettings,
    redis: Redis,
    *,
    tracing: JobTracing | None = None,
) -> FastAPI:
    """The API over ``redis`` (owned by the caller, who closes it after the app stops), traced
    when ``tracing`` is given (also owned by the caller)."""
    state = build_state(settings, core_settings, redis, tracing)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.hub.start()
        loops = LoopGroup()
        if (interval_s := settings.sweep_interval_s) is not None:
            loops.start(functools.partial(sweep_forever, state.queue, interval_s), "api-sweep")
        if (interval_s := settings.schedule_interval_s) is not None:
            runner = ScheduleRunner(ScheduleStore(redis, state.queue.keys), state.queue)
            loops.start(functools.partial(runner.run_forever, interval_s), "api-schedules")
        if settings.webhooks.dispatch:
            dispatcher = WebhookDispatcher(redis, state.queue, settings.webhooks, tracing=tracing)
            await dispatcher.prepare()
            # The dispatcher ends on a flag of its own (decision 0007).
            loops.start(lambda _: dispatcher.run(), "api-webhooks", on_stop=dispatcher.close)
        try:
            yield
        finally:
            await loops.close(LOOP_STOP_TIMEOUT_S)
            await state.hub.stop()

    app = FastAPI(
        title="emp-job-queue API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_middleware(AuditMiddleware, log=AuditLog(redis, state.queue.keys))
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        exempt_paths=frozenset({uploads.UPLOAD_PATH}),
    )
    app.add_middleware(
        AnswerDeadlineMiddleware,
        timeout_s=settings.answer_timeout_s,
        exempt_paths=frozenset({uploads.UPLOAD_PATH}),
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics.http)
    app.state.emp = state
    install_error_handlers(app)
    # The routes themselves, built once per process and shared by every app (decision 0050).
    app.router.routes.extend(API_ROUTES)
    mount_monitor(app)
    return app
