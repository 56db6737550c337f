"""One ``emp worker`` process: a connector behind the worker runtime, until SIGTERM.

Startup waits for the service to answer (ComfyUI may take a minute to load), discovers
what it offers, registers the worker with true capabilities and starts claiming. While it
runs, capabilities are rediscovered and re-registered when they change (a model pulled, a
checkpoint loaded) — between jobs, never while one runs. The service's health is probed
all along (:mod:`emp_queue.worker.health`): the worker claims only while it answers.
SIGTERM or SIGINT drains: no new claims, running jobs get the grace period, the rest go
straight back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError

from emp_queue.connectors.base import Connector, Discovery
from emp_queue.connectors.registry import load_connector
from emp_queue.core.queue import JobQueue
from emp_queue.errors import ConfigurationError, JobFailedError
from emp_queue.hardware import HardwareSettings, detect_hardware
from emp_queue.loops import LoopGroup
from emp_queue.machine_models import MachineHardware
from emp_queue.models import WorkerCapabilities
from emp_queue.settings_env import invalid_settings
from emp_queue.storage import AssetStorage
from emp_queue.telemetry.tracing import JobTracing
from emp_queue.worker.capabilities import with_last_used, worker_capabilities
from emp_queue.worker.context import JobContext
from emp_queue.worker.health import ServiceHealth
from emp_queue.worker.model_fetch import ModelFetcher
from emp_queue.worker.running_job import ConnectorJob
from emp_queue.worker.runtime import Worker
from emp_queue.worker.settings import WorkerProcessSettings, WorkerSettings

log = structlog.get_logger(__name__)

REFRESH_STOP_TIMEOUT_S = 2.0
"""How long the capabilities refresh gets to notice shutdown before it is cancelled."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
START_RETRY_S = 0.5


class ServiceNeverReadyError(ConfigurationError):
    """The worker's service did not answer within ``EMP_WORKER_START_TIMEOUT_S``; check that
    it runs and that the connector's URL setting (``EMP_<CONNECTOR>_URL``) points at it."""


@dataclass
class WorkerProcess:
    """Everything one worker process owns, built by :func:`build_worker_process`."""

    settings: WorkerProcessSettings
    queue: JobQueue
    connector: Connector
    storage: AssetStorage
    machine: MachineHardware
    tracing: JobTracing | None = None
    fetcher: ModelFetcher | None = None
    """Downloads the manifest's models a job needs before it runs (worker/model_fetch.py)."""
    rediscover: asyncio.Event = field(default_factory=asyncio.Event)
    """Set after a job that needed models the worker did not report loaded: what the service
    holds has changed, so the capabilities are refreshed now rather than at the period."""
    reported: WorkerCapabilities | None = None
    last_used: dict[tuple[str, str], int] = field(default_factory=dict)
    """(service, model) → Unix seconds at which a job needing it last finished here; published
    as each service's ``last_used`` at the next capabilities refresh (placement's LRU)."""
    clock: Callable[[], float] = time.time

    def capabilities(self, discovery: Discovery) -> WorkerCapabilities:
        capabilities = worker_capabilities(self.settings, self.machine, discovery)
        if self.fetcher:
            capabilities = self.fetcher.with_fetchable(capabilities)
        return with_last_used(capabilities, self.last_used)

    def handler_settings(self) -> WorkerSettings:
        s = self.settings
        return WorkerSettings(
            concurrency=s.concurrency,
            prefetch=s.prefetch,
            heartbeat_interval_s=s.heartbeat_interval_s,
            sweep_interval_s=s.sweep_interval_s,
            idle_poll_s=s.idle_poll_s,
            drain_grace_s=s.drain_grace_s,
            machine_id=s.machine_id,
            outage_hand_backs=s.outage_hand_backs,
        )

    def service_health(self) -> ServiceHealth:
        return ServiceHealth(
            self.connector.check_health,
            interval_s=self.settings.health_interval_s,
            timeout_s=self.settings.health_timeout_s,
        )

    async def handle(self, context: JobContext) -> dict[str, Any]:
        if self.fetcher is not None:
            await self.fetcher.ensure(context)
        job = ConnectorJob(context, self.storage, self.settings.progress_interval_s)
        try:
            return await self.connector.run(job)
        finally:
            needed = context.job.requirements.get("models", [])
            finished = int(self.clock())
            for model in needed:
                self.last_used[(context.job.service_required, str(model))] = finished
            self._note_models(needed)

    def _note_models(self, needed: list[str]) -> None:
        if not needed or self.reported is None:
            return
        if any(not set(needed) <= set(held.loaded) for held in self.reported.models.values()):
            self.rediscover.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve jobs until ``stop`` is set, then drain; the connector is closed on the way out."""
        await self._start_connector(stop)
        if stop.is_set():
            await self.connector.close()
            return
        try:
            discovery = await self.connector.discover()
            capabilities = self.reported = self.capabilities(discovery)
            worker = Worker(
                self.queue,
                self.settings.worker_id,
                capabilities,
                self.handle,
                self.handler_settings(),
                self.service_health(),
                self.tracing,
            )
            # The refresh ends on a flag, not by cancellation: it may be inside a Redis call.
            loops = LoopGroup()
            loops.start(functools.partial(self._refresh, worker, capabilities), "refresh")
            try:
                async with asyncio.TaskGroup() as tasks:
                    running = tasks.create_task(worker.run(), name="worker")
                    waiting = tasks.create_task(stop.wait(), name="stop")
                    await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    worker.stop()
                    waiting.cancel()
                    await loops.close(REFRESH_STOP_TIMEOUT_S)
            finally:
                await loops.close(REFRESH_STOP_TIMEOUT_S)  # no-op once closed
        finally:
            await self.connector.close()

    async def _start_connector(self, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while not stop.is_set():
            try:
                await self.connector.start()
                return
            except JobFailedError as error:
                if time.monotonic() >= deadline:
                    raise ServiceNeverReadyError(
                        f"{self.connector.kind} never became reachable in "
                        f"{self.settings.start_timeout_s:g} s: {error}"
                    ) from error
                log.info("service_not_ready", connector=self.connector.kind, error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), START_RETRY_S)

    async def _refresh(
        self, worker: Worker, capabilities: WorkerCapabilities, stopping: asyncio.Event
    ) -> None:
        while not await self._next_refresh(stopping):
            if not worker.registered.is_set():
                continue
            # Discovery must not disturb running work: llama.cpp's server cuts a running
            # stream when any other request arrives. Rediscover between jobs, claims held
            # (and if the worker is never idle for a whole period, after a short drain).
            try:
                async with worker.between_jobs(self.settings.capabilities_refresh_s):
                    discovery: Discovery = await self.connector.discover()
            except JobFailedError as error:
                log.warning("discovery_failed", error=str(error))
                continue
            fresh = self.capabilities(discovery)
            if fresh == capabilities:
                continue
            try:
                await worker.update_capabilities(fresh)
            except RedisError as error:
                log.warning("capabilities_refresh_failed", error=str(error))
                continue
            capabilities = self.reported = fresh
            log.info("capabilities_changed", worker_id=worker.worker_id)

    async def _next_refresh(self, stopping: asyncio.Event) -> bool:
        """Wait for the refresh period, or a job that changed the loaded models; True when
        stopping."""
        waits = [asyncio.create_task(e.wait()) for e in (stopping, self.rediscover)]
        try:
            await asyncio.wait(
                waits,
                timeout=self.settings.capabilities_refresh_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for wait in waits:
                wait.cancel()
        self.rediscover.clear()
        return stopping.is_set()


def build_worker_process(
    settings: WorkerProcessSettings,
    queue: JobQueue,
    storage: AssetStorage,
    hardware: HardwareSettings,
    tracing: JobTracing | None = None,
    fetcher: ModelFetcher | None = None,
) -> WorkerProcess:
    kind = load_connector(settings.connector)
    try:
        connector = kind()
    except ValidationError as error:
        raise invalid_settings(error, f"of connector {kind.kind!r}") from error
    return WorkerProcess(
        settings, queue, connector, storage, detect_hardware(hardware), tracing, fetcher
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT only set ``stop``; the main loop drains (never work in a handler)."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
