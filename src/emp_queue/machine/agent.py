"""``MachineAgent``: one machine's life — start up in steps, serve, report, drain, stop.

Usable as a process (``emp machine``) or inside another one (``emp up``): ``run(stop)``
returns once ``stop`` is set and everything it started is stopped; ``ready`` is set when
the machine has registered. Operator actions (control channel, health API) become requests
on one queue that a single task serves, so two restarts never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from emp_queue import __version__
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.settings import CoreSettings
from emp_queue.hardware import (
    GpuDetectionError,
    HardwareSettings,
    detect_hardware,
    with_fresh_gpu_readings,
)
from emp_queue.http_tls import tls_context
from emp_queue.loops import LoopGroup, stopped_within
from emp_queue.machine.health import HealthServer, UnknownServiceError, create_health_app
from emp_queue.machine.logs import LogShipper, ServiceLogFiles
from emp_queue.machine.mapping import ServiceMapping, load_mapping
from emp_queue.machine.placement_loop import Budgets, PlacementExecutor, PlacementLoop
from emp_queue.machine.plan import MachinePlan, PlanContext, WorkerPlan, build_plan, parse_workers
from emp_queue.machine.processes import ProcessTable, daemon_spec, worker_spec
from emp_queue.machine.settings import MachineSettings
from emp_queue.machine.startup import (
    ComponentInstaller,
    ComponentInstallers,
    StartupSequence,
    Step,
    StepOutcome,
)
from emp_queue.machine.supervisor import ManagedProcess, RestartPolicy, ServiceStartError
from emp_queue.machine_models import (
    MachineHardware,
    MachinePhase,
    MachineRecord,
    StartupStep,
    StepStatus,
)
from emp_queue.models import EventType

log = structlog.get_logger(__name__)

WorkerProbe = Callable[[WorkerPlan], Awaitable[bool]]
DRAIN_MARGIN_S = 5.0
CONTROL_POLL_S = 1.0
"""How often the control reader and the restart server look up to check for shutdown."""
LOOP_STOP_TIMEOUT_S = 2.0
"""Time beyond ``EMP_DRAIN_GRACE_S`` a worker gets to hand its jobs back and exit."""
NOTABLE_CHANGES = frozenset({"crashed", "crash_loop", "start_failed"})


def _now_ms() -> int:
    return int(time.time() * 1000)


class MachineAgent:
    def __init__(
        self,
        settings: MachineSettings,
        *,
        redis: Redis,
        redis_url: str,
        core: CoreSettings,
        hardware_settings: HardwareSettings | None = None,
        mapping: ServiceMapping | None = None,
        installers: ComponentInstallers | None = None,
        worker_probe: WorkerProbe | None = None,
        environ: Mapping[str, str] | None = None,
        placement_executor: PlacementExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.placement_executor = placement_executor
        self.redis = redis
        self.redis_url = redis_url
        # The same lease, worker timeout and retention as every other process of the fleet: the
        # agent sweeps and evicts with them.
        self.queue = JobQueue.from_settings(redis, core)
        self.registry = MachineRegistry(redis, self.queue.keys, self.queue.events)
        self.hardware_settings = hardware_settings or HardwareSettings()
        self.mapping = mapping or load_mapping(settings.service_mapping)
        self.installers = installers or ComponentInstallers()
        self.environ = dict(os.environ if environ is None else environ)
        self._worker_probe = worker_probe or self._registered
        self.ready = asyncio.Event()
        self.health_port: int | None = None
        self.hardware = MachineHardware()
        self.plan: MachinePlan | None = None
        self.phase = MachinePhase.STARTING
        self.files = ServiceLogFiles(
            settings.log_dir,
            max_bytes=settings.log_file_max_bytes,
            backups=settings.log_file_backups,
        )
        self.shipper = LogShipper(self.registry, settings.machine_id)
        self.policy = RestartPolicy(
            backoff_s=settings.restart_backoff_s,
            backoff_max_s=settings.restart_backoff_max_s,
            crash_loop_count=settings.crash_loop_count,
            crash_loop_window_s=settings.crash_loop_window_s,
        )
        self.processes = ProcessTable(self.policy, self._output, self._on_change)
        self.steps = StartupSequence(
            [
                Step("health_server", self._start_health),
                Step("hardware", self._detect_hardware),
                Step("custom_nodes", lambda: self._install("custom_nodes")),
                Step("models", lambda: self._install("models")),
                Step("services", self._start_daemons),
                Step("workers", self._start_workers),
                Step("registration", self._register),
            ],
            self._on_step,
        )
        self._started_ms = _now_ms()
        self._startup_ms: int | None = None
        self._clock = time.perf_counter()
        self._dirty = asyncio.Event()
        self._reporting = True
        self._changes: list[dict[str, str]] = []
        self._requests: asyncio.Queue[str | None] = asyncio.Queue()
        self._http: httpx.AsyncClient | None = None
        self._health: HealthServer | None = None
        self._pubsub: PubSub | None = None
        self._loops = LoopGroup()  # the control reader and the restart server

    # The health API's view (MachineControl) ----------------------------------------
    @property
    def is_ready(self) -> bool:
        return self.phase is MachinePhase.READY

    def snapshot(self) -> MachineRecord:
        plan = self.plan
        return MachineRecord(
            machine_id=self.settings.machine_id,
            phase=self.phase,
            hardware=self.hardware,
            steps=[step.model_copy() for step in self.steps.records],
            services=[process.state() for process in self.processes.values()],
            workers=[worker.worker_id for worker in plan.workers] if plan else [],
            worker_types=dict(plan.worker_types) if plan else {},
            pool=os.environ.get("EMP_WORKER_POOL") or os.environ.get("EMP_POOL") or None,
            health_url=self._health_url(),
            started_at=self._started_ms,
            startup_ms=self._startup_ms,
            version=__version__,
        )

    def tail_logs(self, service: str, lines: int) -> list[str]:
        self._known(service)
        return self.files.tail(service, lines)

    def request_restart(self, service: str | None) -> None:
        """Queue a restart of one service (or of all, ``None``); served in order."""
        if service is not None:
            self._known(service)
        self._requests.put_nowait(service)

    # Life -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Start up, serve until ``stop`` is set, then drain and stop everything.

        Raises :class:`MachineStartupError` when a startup step fails (after stopping
        whatever had started).
        """
        self._clock = time.perf_counter()
        self._started_ms = _now_ms()
        self._http = httpx.AsyncClient(
            timeout=2.0, trust_env=False, verify=tls_context(trust_env=False)
        )
        background = [
            asyncio.create_task(self.shipper.run(), name="log-shipper"),
            asyncio.create_task(self._status_loop(), name="machine-status"),
        ]
        failed = False
        try:
            await self._publish(EventType.MACHINE_STARTUP)
            startup = asyncio.create_task(self.steps.run(), name="machine-startup")
            if await _first_or_stop(startup, stop):
                await self._announce_ready()
                self._loops.start(self._listen_control, "control")
                self._loops.start(self._serve_requests, "requests")
                self._start_placement()
                self.ready.set()
                await stop.wait()
        except BaseException:
            failed = True
            raise
        finally:
            await self._shutdown(background, failed=failed)

    async def _shutdown(self, background: list[asyncio.Task[None]], *, failed: bool) -> None:
        self.phase = MachinePhase.DRAINING
        await self._publish(
            EventType.MACHINE_SHUTDOWN, reason="startup_failed" if failed else "stop"
        )
        shipper, status_loop = background
        # Ended by flag with a bounded wait (decision 0007): the control reader is polling
        # Redis, where a cancellation alone can be swallowed.
        await self._loops.close(LOOP_STOP_TIMEOUT_S)
        await self.processes.stop_all()
        self.phase = MachinePhase.FAILED if failed else MachinePhase.STOPPED
        # Ended by flag, not cancelled: redis-py may swallow a cancellation mid-command.
        self._reporting = False
        self._dirty.set()
        await status_loop
        await self.shipper.close()
        await shipper
        if self._pubsub is not None:
            await self._pubsub.aclose()
        if self._health is not None:
            await self._health.stop()
        if self._http is not None:
            await self._http.aclose()
        self.files.close()
        log.info("machine_stopped", machine_id=self.settings.machine_id, phase=str(self.phase))

    # Steps ------------------------------------------------------------------------
    async def _start_health(self) -> StepOutcome:
        settings = self.settings
        app = create_health_app(self, settings.health_key)
        self._health = HealthServer(
            app, settings.health_host, settings.health_port, settings.health_key
        )
        self.health_port = await self._health.start()
        return StepOutcome(detail=self._health_url())

    async def _detect_hardware(self) -> StepOutcome:
        self.hardware = await asyncio.to_thread(detect_hardware, self.hardware_settings)
        context = PlanContext(self.settings.machine_id, self.settings.services, self.environ)
        requests = parse_workers(self.settings.workers, self.mapping)
        self.plan = build_plan(requests, self.hardware, self.mapping, context)
        hw = self.hardware
        return StepOutcome(
            detail=f"{len(hw.gpus)} GPU(s) ({hw.gpu_mode}), {hw.cpu_cores} cores, "
            f"{hw.ram_gb} GB RAM; {len(self.plan.daemons)} service(s), "
            f"{len(self.plan.workers)} worker(s)"
        )

    async def _install(self, step: str) -> StepOutcome:
        installer: ComponentInstaller | None = getattr(self.installers, step)
        if installer is None:
            return StepOutcome(StepStatus.SKIPPED, "no component manifest configured")

        async def progress(message: str, fraction: float | None = None) -> None:
            shown = message if fraction is None else f"{message} ({fraction:.0%})"
            await self.steps.update(step, shown)

        await installer.install(progress)
        return StepOutcome()

    async def _start_daemons(self) -> StepOutcome:
        assert self.plan is not None
        assert self._http is not None
        for daemon in self.plan.daemons:
            self.processes.add(
                daemon_spec(daemon, self.environ, self._http, self.settings.stop_grace_s)
            )
        names = [daemon.name for daemon in self.plan.daemons]
        await self.processes.start(names)
        return StepOutcome(detail=", ".join(names) or "no services to run")

    async def _start_workers(self) -> StepOutcome:
        assert self.plan is not None
        settings = self.settings
        environ = {
            **self.environ,
            "PYTHONUNBUFFERED": "1",
            "EMP_LOG_JSON": "1",
            "EMP_LOG_LEVEL": self.environ.get("EMP_LOG_LEVEL", "INFO"),
            "EMP_REDIS_URL": self.redis_url,
            "EMP_NAMESPACE": self.queue.keys.namespace,
            "EMP_WORKER_DRAIN_GRACE_S": str(settings.drain_grace_s),
        }
        for worker in self.plan.workers:
            spec = worker_spec(
                worker,
                launcher=settings.worker_command or [sys.executable, "-m", "emp_queue"],
                environ=environ,
                probe=functools.partial(self._worker_probe, worker),
                before_start=functools.partial(self._clear_stale, worker),
                after_crash=functools.partial(self._release_dead, worker),
                start_timeout_s=settings.worker_start_timeout_s,
                stop_grace_s=settings.drain_grace_s + DRAIN_MARGIN_S,
            )
            self.processes.add(spec)
        names = [worker.name for worker in self.plan.workers]
        await self.processes.start(names)
        return StepOutcome(detail=f"{len(names)} worker(s) registered")

    async def _register(self) -> StepOutcome:
        # Subscribed before "ready": an action sent right after is not lost.
        self._pubsub = self.redis.pubsub()
        await self._pubsub.subscribe(self.queue.keys.machine_control(self.settings.machine_id))
        self.phase = MachinePhase.READY
        return StepOutcome(detail="listening for operator actions")

    def _start_placement(self) -> None:
        """Predictive placement, when configured (placement_interval_s > 0)."""
        settings = self.settings
        if settings.placement_interval_s <= 0 or self.placement_executor is None:
            return
        vram_gb = settings.placement_vram_gb or sum(g.memory_gb for g in self.hardware.gpus)
        budgets = Budgets(
            vram_bytes=round(vram_gb * 1e9), disk_bytes=round(settings.placement_disk_gb * 1e9)
        )
        loop = PlacementLoop(
            self.queue,
            settings.machine_id,
            budgets,
            self.placement_executor,
            self._publish,
            interval_s=settings.placement_interval_s,
        )
        self._loops.start(loop.run, "placement")

    async def _announce_ready(self) -> None:
        self._startup_ms = round((time.perf_counter() - self._clock) * 1000)
        await self._publish(EventType.MACHINE_STARTUP_COMPLETE, total_ms=self._startup_ms)
        log.info("machine_ready", machine_id=self.settings.machine_id, ms=self._startup_ms)

    # Processes ----------------------------------------------------------------------
    async def _restart_all(self) -> None:
        self.phase = MachinePhase.STARTING
        self._dirty.set()
        await self.processes.restart_all()
        self.phase = MachinePhase.READY
        self._dirty.set()

    async def _registered(self, worker: WorkerPlan) -> bool:
        try:
            return worker.worker_id in await self.queue.live_workers()
        except RedisError:
            return False

    async def _clear_stale(self, worker: WorkerPlan) -> None:
        """A registration left by a dead predecessor would make the probe lie (and its
        jobs wait for their lease to run out): evict it before the new process starts."""
        try:
            if worker.worker_id in await self.queue.live_workers():
                requeued = await self.queue.evict_worker(worker.worker_id, "replaced")
                log.info("stale_worker_evicted", worker_id=worker.worker_id, requeued=requeued)
        except RedisError as error:
            log.warning("stale_worker_check_failed", worker_id=worker.worker_id, error=str(error))

    async def _release_dead(self, worker: WorkerPlan) -> None:
        """The worker process died (OOM, crash, SIGKILL) while this agent lives: it knows at
        once, so the jobs it held are requeued now rather than after their leases run out."""
        try:
            requeued = await self.queue.evict_worker(worker.worker_id, "worker_died")
        except RedisError as error:  # the leases still bound the wait
            log.warning("dead_worker_release_failed", worker_id=worker.worker_id, error=str(error))
            return
        log.info("dead_worker_released", worker_id=worker.worker_id, requeued=requeued)

    def _output(self, service: str, line: str) -> None:
        self.files.write(service, line)
        self.shipper.offer(service, line)

    def _on_change(self, process: ManagedProcess, reason: str) -> None:
        if reason in NOTABLE_CHANGES:
            self._changes.append({"service": process.name, "reason": reason})
        self._dirty.set()

    def _known(self, service: str) -> None:
        if service not in self.processes:
            known = ", ".join(self.processes) or "none yet"
            raise UnknownServiceError(
                f"machine {self.settings.machine_id!r} runs no service {service!r} "
                f"(services: {known})"
            )

    # Reporting and control -------------------------------------------------------------
    async def _on_step(self, step: StartupStep) -> None:
        await self._publish(
            EventType.MACHINE_STARTUP_STEP,
            step=step.name,
            status=str(step.status),
            duration_ms=step.duration_ms,
        )

    async def _publish(self, event: EventType, **extra: Any) -> None:
        try:
            self.hardware = with_fresh_gpu_readings(self.hardware)
        except GpuDetectionError as error:
            # The record goes out with the last figures; the next status reads them again.
            log.warning("gpu_memory_unreadable", error=str(error))
        try:
            await self.registry.publish(self.snapshot(), event, **extra)
        except RedisError as error:
            # The next status retries; a broker blip must not take the machine down.
            log.warning("machine_publish_failed", event_type=str(event), error=str(error))

    async def _status_loop(self) -> None:
        """Publishes every interval and on every change; once more after the flag drops."""
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.status_interval_s):
                    await self._dirty.wait()
            self._dirty.clear()
            changes, self._changes = self._changes, []
            extra = {"changes": changes} if changes else {}
            await self._publish(EventType.MACHINE_UPDATE, **extra)
            if not self._reporting:
                return

    async def _listen_control(self, stopping: asyncio.Event) -> None:
        """Polls (``get_message`` with a timeout sends no command) so it sees ``stopping``."""
        assert self._pubsub is not None
        while not stopping.is_set():
            try:
                message = await self._pubsub.get_message(timeout=CONTROL_POLL_S)
            except RedisError as error:
                # redis-py resubscribes on reconnect; an action sent meanwhile is lost.
                log.warning("machine_control_interrupted", error=str(error))
                await stopped_within(stopping, CONTROL_POLL_S)
                continue
            if message is not None and message.get("type") == "message":
                self._on_control(message["data"])

    def _on_control(self, data: bytes | str) -> None:
        try:
            action = json.loads(data)
            kind = action["action"]
            if kind == "restart_service":
                self.request_restart(str(action["service"]))
            elif kind == "restart":
                self.request_restart(None)
            else:
                log.warning("machine_control_unknown", action=kind)
        except (ValueError, KeyError, TypeError, UnknownServiceError) as error:
            log.warning("machine_control_rejected", data=str(data)[:200], error=str(error))

    async def _serve_requests(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                async with asyncio.timeout(CONTROL_POLL_S):
                    service = await self._requests.get()
            except TimeoutError:
                continue
            log.info("restart_requested", service=service or "all")
            try:
                if service is None:
                    await self._restart_all()
                else:
                    await self.processes[service].restart()
            except ServiceStartError as error:
                log.warning("restart_failed", service=service or "all", error=str(error))

    def _health_url(self) -> str | None:
        if self.health_port is None:
            return None
        return f"http://{self.settings.health_host}:{self.health_port}"


async def _first_or_stop(task: asyncio.Task[None], stop: asyncio.Event) -> bool:
    """Wait for ``task`` unless ``stop`` comes first (then cancel it); True if it finished."""
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True
