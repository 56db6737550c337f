"""``Worker``: claim → run → report, with leases, cancel, timeouts and a graceful drain.

One asyncio process; ``concurrency`` jobs at a time. A claim that leaves slots free lists
the worker as idle, and the script that next makes matching work claimable wakes it on its
own channel (``core/lua/wake.lua``: as many workers as there are new jobs, not all of them)
with the jobs it claimed for it in the notice (decision 0073), so it does not poll beyond a
slow safety tick; busy, it claims as many jobs as it has free
slots and acknowledges finished jobs in batches, so one Redis round trip serves many jobs.
A worker that cannot claim for a while (service down, claims held, draining) says so
(``decline_wake``), so that the work it would have been woken for goes to another.

With a :class:`~emp_queue.worker.health.ServiceHealth`, claims are gated on the service:
while it does not answer the worker shows ``service_down``, claims nothing and hands back
what it holds without spending the jobs' attempts (``outage_hand_backs`` per job at most).
An idle worker also wakes when a retry it caused becomes claimable by it, and when the claim
made it the watcher of the scheduled set's head (decision 0072), not only on the slow safety
tick.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from emp_queue.core.queue import JobQueue
from emp_queue.core.worker_calls import ClaimOutcome, CompletionOutcome
from emp_queue.errors import JobFailedError, StaleAttemptError, WorkerNotRegisteredError
from emp_queue.models import (
    ClaimedJob,
    FailureClass,
    Job,
    JobError,
    JobStatus,
    WorkerCapabilities,
)
from emp_queue.worker.context import JobContext, JobHandler
from emp_queue.worker.health import ServiceHealth
from emp_queue.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from emp_queue.telemetry.tracing import JobTracing

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 5.0
"""How long the background loops get to notice the worker closed before being cancelled."""
CANCEL_ATTEMPTS = 3
NOTICE_POLL_S = 0.25
"""How often the notice reader looks up from its socket to check for close (no Redis call)."""
BROKER_RETRY_S = 1.0
"""Pause before retrying after Redis failed; the worker outlives a broker outage."""
WAKEUP_MARGIN_S = 0.005
"""Woken this much after a retry becomes claimable, so that the scripts' clock agrees."""
MIN_WAKEUP_S = 0.05
IDLE_CHECK_S = 0.2
SEEN_MAX = 10_000
"""Jobs remembered as given to this worker (far more than a heartbeat interval's worth)."""
"""How often :meth:`Worker.between_jobs` looks for a moment the worker holds no job."""


class Worker:
    """Runs jobs from ``queue`` that ``capabilities`` satisfy, through ``handler``."""

    def __init__(
        self,
        queue: JobQueue,
        worker_id: str,
        capabilities: WorkerCapabilities,
        handler: JobHandler,
        settings: WorkerSettings | None = None,
        health: ServiceHealth | None = None,
        tracing: JobTracing | None = None,
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.capabilities = capabilities
        self.handler = handler
        self.settings = settings or WorkerSettings()
        self._running: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self._ready: collections.deque[ClaimedJob] = collections.deque()
        # Every (job, attempt) this worker was given, newest last: a job the broker says is
        # assigned to it but that it did not list is taken up only if it is not among them.
        self._seen: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._finished: list[tuple[str, int, Any]] = []
        self._acking: set[str] = set()  # results not yet recorded: their send claims the slot
        self._finished_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closed = asyncio.Event()
        self._beat_now = asyncio.Event()
        self.registered = asyncio.Event()
        self.health = health
        self._wakeups: list[float] = []  # loop times when a scheduled retry becomes ours
        self._failed_here: list[str] = []  # retries this worker caused, since the last look
        self._claiming = asyncio.Lock()  # held by each claim, and by between_jobs()
        self._claims_held = False  # between_jobs() waits for the running jobs to end
        self.tracing = tracing
        self._traces: dict[str, Context | None] = {}  # claimed, not yet started: their trace
        self._completing: dict[str, Context | None] = {}  # finished, completion not yet sent
        self._woken = False  # a wake-up came: claim even a few slots, or hand it on
        self._listed_idle = False  # the last claim left slots free: the broker may wake us
        self._waiting: asyncio.Timeout | None = None  # the claim loop's wait for a wake-up

    def stop(self) -> None:
        """Ask for a graceful drain (safe to call from a signal handler's callback)."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        await self._register()
        pubsub = self.queue.redis.pubsub()
        await pubsub.subscribe(
            self.queue.keys.worker_wake(self.worker_id),
            self.queue.keys.worker_control(self.worker_id),
        )
        self.registered.set()
        log.info("worker_started", worker_id=self.worker_id, services=self.capabilities.services)
        try:
            async with asyncio.TaskGroup() as tasks:
                background = [
                    tasks.create_task(self._listen(pubsub)),
                    tasks.create_task(self._heartbeats()),
                    tasks.create_task(self._sweeps()),
                    tasks.create_task(self._acknowledge()),
                ]
                if self.health is not None:
                    self.health.on_change = self._health_changed
                    background.append(tasks.create_task(self.health.watch(self._closed)))
                await self._claim_loop()
                await self._drain()
                # The loops end on this flag rather than by cancellation: redis-py can swallow
                # a CancelledError that lands inside a command and leave the task running.
                self._closed.set()
                self._beat_now.set()
                self._finished_ready.set()
                await asyncio.wait(background, timeout=CLOSE_TIMEOUT_S)
                for task in background:
                    task.cancel()
        finally:
            await pubsub.aclose()
            # Whatever it still holds goes back now: a job handed over in a notice it never
            # read (the drain releases the rest; one whose release failed comes back too).
            await self.queue.deregister_worker(self.worker_id, "shutdown", release_held=True)
            log.info("worker_stopped", worker_id=self.worker_id)

    # Claiming -----------------------------------------------------------------
    async def _claim_loop(self) -> None:
        # Refill in batches: one claim for a quarter of the slots costs less than many claims
        # of one, and a job waits at most as long as a quarter of the running jobs take.
        capacity = self.settings.concurrency + self.settings.prefetch
        refill_at = max(1, capacity // 4)
        while not self._stopping.is_set():
            # Cleared before claiming, never after: a notice (new work, a freed slot) that
            # arrives while the claim is in flight must wake the next wait, not be lost.
            self._wake.clear()
            if self._ready and self._may_start_now():
                self._start_ready()  # handed over while it could not start them
            woken, self._woken = self._woken, False
            if not self.service_up:
                if self._held():
                    await self._hand_back_held()
                await self._leave_idle_lists(woken)
                await self._wait_for_wake(self.settings.idle_poll_s)
                continue
            wait_s = self.settings.idle_poll_s
            free = capacity - len(self._running) - len(self._ready)
            if self._claims_held or (woken and free <= 0):
                await self._leave_idle_lists(woken)
            elif free > 0 and (free >= refill_at or not self._running or woken):
                try:
                    async with self._claiming:
                        started_ns = time.time_ns() if self.tracing is not None else 0
                        outcome = await self.queue.claim_until_due(self.worker_id, count=free)
                        claimed = outcome.jobs
                        self._note_due(outcome.due_in_s)
                        if self.tracing is not None:
                            self._trace_claims(claimed, started_ns)
                        self._listed_idle = len(claimed) < free
                        self._take(claimed)
                        self._start_ready()
                except WorkerNotRegisteredError:
                    # Evicted (DELETE /api/workers/{id}) or swept while alive: come back.
                    self._woken = self._woken or woken
                    await self._register_again()
                    continue
                except RedisError as error:
                    log.warning("claim_failed", worker_id=self.worker_id, error=str(error))
                    self._woken = self._woken or woken  # the wake-up still needs its claim
                    await self._pause_unless_stopping(BROKER_RETRY_S)
                    continue
                if len(claimed) == free:
                    continue  # the queue may hold more: fill the next free slots at once
                wait_s = await self._until_a_retry_is_ours()
            await self._wait_for_wake(wait_s)

    async def _leave_idle_lists(self, woken: bool) -> None:
        """This worker will not claim for now: hand on any wake-up meant for it."""
        if not (woken or self._listed_idle):
            return
        try:
            await self.queue.decline_wake(self.worker_id)
        except RedisError as error:
            log.warning("decline_wake_failed", worker_id=self.worker_id, error=str(error))
            self._woken = True  # try again on the next turn of the loop
            return
        self._listed_idle = False

    async def _wait_for_wake(self, timeout_s: float) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s) as self._waiting:
                    await self._wake.wait()
        finally:
            self._waiting = None

    def _note_due(self, due_in_s: float | None) -> None:
        """A job the claim left (pool fallback, affinity hold) or a scheduled job becomes
        claimable then: wake, sooner than the wait in progress if need be (a claim sent with
        the results, complete_and_claim, notes one while the claim loop waits)."""
        if due_in_s is None:
            return
        wake_at = asyncio.get_running_loop().time() + due_in_s + WAKEUP_MARGIN_S
        self._wakeups.append(wake_at)
        waiting = self._waiting
        # Not a wait whose deadline already passed (the claim loop has yet to see it end):
        # rescheduling one raises, and it is about to claim anyway.
        if waiting is not None and not waiting.expired() and (waiting.when() or math.inf) > wake_at:
            waiting.reschedule(wake_at)

    async def _until_a_retry_is_ours(self) -> float:
        """How long to wait for work at most: the idle tick, or less when a scheduled retry
        becomes claimable by this worker sooner (nothing publishes that moment)."""
        loop_now = asyncio.get_running_loop().time()
        failed_here, self._failed_here = self._failed_here, []
        delays: list[float] = []
        if failed_here:  # the scheduled set's head, when it watches it, came with the claim
            try:
                delays = await self.queue.retry_wakeups_in_s(failed_here)
            except RedisError as error:
                log.warning("retry_lookup_failed", worker_id=self.worker_id, error=str(error))
        self._wakeups = [t for t in self._wakeups if t > loop_now]
        self._wakeups += [loop_now + delay + WAKEUP_MARGIN_S for delay in delays]
        if not self._wakeups:
            return self.settings.idle_poll_s
        return max(MIN_WAKEUP_S, min(self.settings.idle_poll_s, min(self._wakeups) - loop_now))

    async def _pause_unless_stopping(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()

    def _trace_claims(self, claimed: list[ClaimedJob], started_ns: int) -> None:
        assert self.tracing is not None
        ended_ns = time.time_ns()
        held = {job_id for job_id, _ in self._held()}
        for stale in [job_id for job_id in self._traces if job_id not in held]:
            del self._traces[stale]  # handed back or abandoned before it started
        for job in claimed:
            self._traces[job.job.id] = self.tracing.claimed(
                job.job, job.attempt, self.worker_id, started_ns, ended_ns
            )

    def _start_ready(self) -> None:
        while self._ready and len(self._running) < self.settings.concurrency:
            claimed = self._ready.popleft()
            task = asyncio.create_task(self._execute(claimed), name=f"job-{claimed.job.id}")
            self._running[claimed.job.id] = (claimed.attempt, task)
            task.add_done_callback(functools.partial(self._slot_freed, claimed.job.id))

    def _slot_freed(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        if not self._stopping.is_set():
            self._start_ready()
        if job_id not in self._acking:
            self._wake.set()
        # else the result's send claims for the slot (complete_and_claim) or wakes the loop:
        # a claim of its own now would be a second script run for the same slot.

    @contextlib.asynccontextmanager
    async def between_jobs(self, patience_s: float) -> AsyncIterator[None]:
        """Run the block at a moment the worker holds no job, with claims held until it ends
        (for requests that would disturb running work, such as rediscovery). A worker never
        idle for ``patience_s`` stops claiming until its running jobs are done."""
        deadline = asyncio.get_running_loop().time() + patience_s
        try:
            while True:
                if asyncio.get_running_loop().time() >= deadline:
                    self._claims_held = True
                async with self._claiming:
                    if not self.busy and self.service_up:
                        yield
                        return
                await asyncio.sleep(IDLE_CHECK_S)
        finally:
            self._claims_held = False
            self._wake.set()

    @property
    def busy(self) -> bool:
        """Holds jobs (running or prefetched)."""
        return bool(self._running or self._ready)

    @property
    def service_up(self) -> bool:
        return self.health is None or self.health.is_up

    def _held(self) -> list[tuple[str, int]]:
        """Every attempt this worker holds a lease on: running and prefetched."""
        running = [(job_id, attempt) for job_id, (attempt, _) in self._running.items()]
        return running + [(c.job.id, c.attempt) for c in self._ready]

    # Running ------------------------------------------------------------------
    async def _execute(self, claimed: ClaimedJob) -> None:
        job, attempt = claimed.job, claimed.attempt
        context = JobContext(job, attempt, self, trace=self._traces.pop(job.id, None))
        try:
            await self._run_attempt(job, attempt, context)
        finally:
            context._progress.close()

    async def _run_attempt(self, job: Job, attempt: int, context: JobContext) -> None:
        deadline = asyncio.timeout(job.timeout_s)  # None: no deadline
        try:
            async with deadline:
                result = await self._handle(context)
        except TimeoutError as error:
            if not deadline.expired():
                # A timeout inside the handler (a socket's, say) that its connector did not
                # classify: the worker's fault, not the job's deadline.
                await self._handler_crashed(job.id, attempt, error)
                return
            message = f"execution exceeded timeout_s={job.timeout_s}"
            await self._report_failure(job.id, attempt, FailureClass.TIMEOUT, message)
        except StaleAttemptError as stale:
            # Cancelled, superseded or finished elsewhere while running: nothing to report.
            log.info("attempt_superseded", job_id=job.id, attempt=attempt, reason=stale.reason)
        except JobFailedError as failure:
            if await self._service_went_down(failure):
                await self._hand_back(job.id, attempt, str(failure))
                return
            await self._report_failure(
                job.id, attempt, FailureClass(failure.failure_class), str(failure), failure.details
            )
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a handler bug or crash is the worker's fault, not the job's
            await self._handler_crashed(job.id, attempt, error)
        else:
            if self.tracing is not None:
                self._completing[job.id] = context.trace
            self._finished.append((job.id, attempt, result))
            self._acking.add(job.id)
            self._finished_ready.set()

    async def _handle(self, context: JobContext) -> Any:
        if self.tracing is None:
            return await self.handler(context)
        job, attempt = context.job, context.attempt
        with self.tracing.run(job, attempt, self.worker_id, context.trace):
            return await self.handler(context)

    async def _handler_crashed(self, job_id: str, attempt: int, error: Exception) -> None:
        log.error("job_handler_crashed", job_id=job_id, attempt=attempt, exc_info=error)
        message = f"{type(error).__name__}: {error}"
        await self._report_failure(job_id, attempt, FailureClass.WORKER_FAULT, message)

    async def _report_failure(
        self,
        job_id: str,
        attempt: int,
        failure_class: FailureClass,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        error = JobError(failure_class=failure_class, message=message, details=details or {})
        try:
            status = await self.queue.fail(self.worker_id, job_id, attempt, error)
        except StaleAttemptError as stale:
            log.info("failure_report_refused", job_id=job_id, reason=stale.reason)
            return
        except RedisError as broker_error:
            # The lease runs out and the sweep retries the job: nothing is lost.
            log.warning("failure_report_failed", job_id=job_id, error=str(broker_error))
            return
        if status == JobStatus.PENDING:
            self._failed_here.append(job_id)  # wake when the avoid grace lets us retry it
        log.info("job_failed", job_id=job_id, failure_class=failure_class, status=status)

    # Service health -------------------------------------------------------------
    async def _service_went_down(self, failure: JobFailedError) -> bool:
        """After a service fault: is the service really down (not just this job's problem)?"""
        if self.health is None or failure.failure_class != FailureClass.SERVICE_FAULT:
            return False
        return await self.health.confirm_down()

    def _health_changed(self, up: bool) -> None:
        # The registry must show the new state now, not at the next heartbeat; the claim
        # loop stops (and hands back) or resumes.
        self._beat_now.set()
        self._wake.set()

    async def _hand_back_held(self) -> None:
        """The service is down: stop the running jobs and hand everything back."""
        held = self._held()
        self._ready.clear()
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        await self._until_stopped(tasks)
        reason = self.health.last_error if self.health is not None else None
        for job_id, attempt in held:
            await self._hand_back(job_id, attempt, reason or "service down")

    async def _hand_back(self, job_id: str, attempt: int, reason: str) -> None:
        budget = self.settings.outage_hand_backs
        try:
            status = await self.queue.hand_back_for_outage(self.worker_id, job_id, attempt, budget)
        except StaleAttemptError:
            return  # already handed back, or cancelled meanwhile
        except RedisError as error:
            log.warning("hand_back_failed", job_id=job_id, error=str(error))
            return  # the lease runs out and the sweep requeues it
        if status is None:
            message = f"{reason} (the service was down {budget} times while running this job)"
            await self._report_failure(job_id, attempt, FailureClass.SERVICE_FAULT, message)
            return
        log.info("job_handed_back", job_id=job_id, reason="service_down", status=status)

    async def _acknowledge(self) -> None:
        """Send finished results in batches: everything that finished since the last send."""
        while not self._closed.is_set():
            await self._finished_ready.wait()
            self._finished_ready.clear()
            await self._flush_finished()

    async def _flush_finished(self) -> None:
        batch, self._finished = self._finished, []
        if not batch:
            return
        started_ns = time.time_ns() if self.tracing is not None else 0
        try:
            if self._claiming.locked() or not await self._complete_and_claim(batch):
                outcomes = await self.queue.complete_many(self.worker_id, batch)
                self._completed(batch, outcomes, started_ns)
                self._wake.set()  # the freed slots are the claim loop's to fill
        except RedisError as error:
            # Keep the results: they are sent again once Redis answers (leases permitting).
            log.warning("completion_failed", jobs=len(batch), error=str(error))
            self._finished[:0] = batch
            self._wake.set()
            await asyncio.sleep(BROKER_RETRY_S)
            self._finished_ready.set()
            return
        self._acking.difference_update(job_id for job_id, _, _ in batch)

    def _completed(
        self, batch: list[tuple[str, int, Any]], outcomes: list[CompletionOutcome], started_ns: int
    ) -> None:
        if self.tracing is not None:
            for job_id, _, _ in batch:
                self.tracing.completed(job_id, self._completing.pop(job_id, None), started_ns)
        for outcome in outcomes:
            if not outcome.accepted:
                log.info("completion_refused", job_id=outcome.job_id, reason=outcome.reason)

    async def _complete_and_claim(self, batch: list[tuple[str, int, Any]]) -> bool:
        """Send the results and claim the slots they free in one call, when the claim loop
        would claim them now (decision 0070); False when it would not (nothing sent then).
        The finished jobs' tasks may not have left ``_running`` yet: their slots count as
        free."""
        if self._stopping.is_set() or self._claims_held or not self.service_up:
            return False
        finished = {job_id for job_id, _, _ in batch}
        running = sum(1 for job_id in self._running if job_id not in finished)
        free = self.settings.concurrency + self.settings.prefetch - running - len(self._ready)
        refill_at = max(1, (self.settings.concurrency + self.settings.prefetch) // 4)
        if free <= 0 or not (free >= refill_at or running == 0):
            return False
        async with self._claiming:
            started_ns = time.time_ns()
            outcomes, claim = await self.queue.complete_and_claim(self.worker_id, batch, free)
            self._completed(batch, outcomes, started_ns)
            if claim is None:  # swept or evicted: the claim loop registers again
                self._wake.set()
                return True
            self._note_due(claim.due_in_s)
            if self.tracing is not None:
                self._trace_claims(claim.jobs, started_ns)
            self._listed_idle = len(claim.jobs) < free
            self._take(claim.jobs)
            self._start_ready()
        return True

    # Liveness and control -----------------------------------------------------
    async def _closed_within(self, delay_s: float) -> bool:
        """Wait ``delay_s`` or until the worker closes; True when it closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._closed.wait()
        return self._closed.is_set()

    async def _next_beat(self) -> bool:
        """Wait for the next heartbeat (its interval, or a state change); True when closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.heartbeat_interval_s):
                await self._beat_now.wait()  # also set when the worker closes
        self._beat_now.clear()
        return self._closed.is_set()

    async def _heartbeats(self) -> None:
        while not await self._next_beat():
            held = self._held()
            status = "busy" if held else "idle"
            if not self.service_up:
                status = "service_down"
            try:
                beat = await self.queue.heartbeat(self.worker_id, held, status)
            except WorkerNotRegisteredError:
                # Swept while Redis was out of reach: come back (the leases decide the rest).
                await self._register_again()
                continue
            except RedisError as error:
                log.warning("heartbeat_failed", worker_id=self.worker_id, error=str(error))
                continue
            for revocation in beat.revocations:
                self._abandon(revocation.job_id, revocation.reason)
            if beat.unheard and not self._stopping.is_set():
                await self._take_up_unheard(beat.unheard)

    async def _take_up_unheard(self, unheard: list[tuple[str, int]]) -> None:
        """Jobs the broker assigned to this worker that never reached it (a hand-over notice
        or a claim reply lost with a connection): taken up as if claimed now, instead of
        waiting out their leases. One it was given already (finished, its result on the
        way; or being handed back) is not run again."""
        fresh = {
            job_id: attempt for job_id, attempt in unheard if self._seen.get(job_id) != attempt
        }
        if not fresh:
            return
        try:
            jobs = await self.queue.get_many(list(fresh))
        except RedisError as error:
            log.warning("unheard_jobs_read_failed", worker_id=self.worker_id, error=str(error))
            return
        found = [
            ClaimedJob(job=job, attempt=job.attempt, lease_until_ms=0)
            for job in jobs
            if job.status is JobStatus.ASSIGNED
            and job.worker_id == self.worker_id
            and fresh.get(job.id) == job.attempt
        ]
        taken = self._take(found)
        if not taken:
            return
        log.warning(
            "unheard_jobs_taken_up", worker_id=self.worker_id, jobs=[c.job.id for c in taken]
        )
        self._start_or_leave_to_the_loop()

    def _take(self, claimed: list[ClaimedJob]) -> list[ClaimedJob]:
        """Hold these jobs (prefetched until a slot starts them), each (job, attempt) once."""
        taken = [c for c in claimed if self._seen.get(c.job.id) != c.attempt]
        for c in taken:
            self._seen[c.job.id] = c.attempt
            self._seen.move_to_end(c.job.id)
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        self._ready.extend(taken)
        return taken

    async def _register(self, capabilities: WorkerCapabilities | None = None) -> None:
        """Join the registry, taking jobs in wake notices up to the slots it has (its
        running and prefetched jobs, decision 0073)."""
        await self.queue.register_worker(
            self.worker_id,
            capabilities or self.capabilities,
            machine_id=self.settings.machine_id,
            handoff_capacity=self.settings.concurrency + self.settings.prefetch,
        )

    async def update_capabilities(self, capabilities: WorkerCapabilities) -> None:
        """Register again with new capabilities (models pulled, nodes added), everything
        else as before; the broker matches on the new ones from the next claim on. Raises
        what the registration raised, the old capabilities kept."""
        await self._register(capabilities)
        self.capabilities = capabilities

    async def _register_again(self) -> None:
        log.warning("worker_registering_again", worker_id=self.worker_id)
        try:
            await self._register()
        except RedisError as error:
            log.warning("register_failed", worker_id=self.worker_id, error=str(error))
            await self._pause_unless_stopping(BROKER_RETRY_S)

    async def _sweeps(self) -> None:
        while not await self._closed_within(self.settings.sweep_interval_s):
            try:
                # Half the interval: one worker alone still sweeps every interval; a fleet
                # shares the work instead of multiplying it (fleet_scale in benchmarks.md).
                await self.queue.sweep_unless_recent(self.settings.sweep_interval_s / 2)
            except RedisError as error:
                log.warning("sweep_failed", error=str(error))

    async def _listen(self, pubsub: PubSub) -> None:
        while not self._closed.is_set():
            try:
                await self._dispatch_notices(pubsub)
            except RedisError as error:
                # redis-py resubscribes when it reconnects; notices sent meanwhile are lost,
                # so look for work once more (cancelled jobs are caught by the heartbeat).
                log.warning("notices_interrupted", worker_id=self.worker_id, error=str(error))
                await asyncio.sleep(BROKER_RETRY_S)
                self._wake.set()

    async def _dispatch_notices(self, pubsub: PubSub) -> None:
        control = self.queue.keys.worker_control(self.worker_id).encode()
        while not self._closed.is_set():
            message = await pubsub.get_message(timeout=NOTICE_POLL_S)
            if message is None or message["type"] != "message":
                continue
            if message["channel"] == control:
                notice = json.loads(message["data"])
                if notice.get("action") == "cancel":
                    self._abandon(notice["job_id"], "cancelled", notice.get("attempt"))
                continue
            handed = await self.queue.handed_over(self.worker_id, message["data"])
            if handed is None:
                self._woken = True
                self._wake.set()
            else:
                self._take_handed_over(*handed)

    def _take_handed_over(self, asked: int, claim: ClaimOutcome) -> None:
        """The run that woke this worker claimed for it (decision 0073): the jobs are held
        as if its own claim had brought them. They start now unless the claim loop would not
        start them (stopping, service down, claims held, a claim of its own in flight): then
        the loop sees them (it starts, hands back or the drain releases them)."""
        self._note_due(claim.due_in_s)
        if self.tracing is not None:
            self._trace_claims(claim.jobs, time.time_ns())
        self._listed_idle = len(claim.jobs) < asked
        self._take(claim.jobs)
        self._start_or_leave_to_the_loop()

    def _start_or_leave_to_the_loop(self) -> None:
        """Start jobs taken outside the claim loop (handed over, taken up at a heartbeat) now,
        unless the loop would not start them now: then it is woken to deal with them."""
        if self._may_start_now():
            self._start_ready()
        else:
            self._wake.set()

    def _may_start_now(self) -> bool:
        return (
            not self._stopping.is_set()
            and self.service_up
            and not self._claims_held
            and not self._claiming.locked()
        )

    def _abandon(self, job_id: str, reason: str, attempt: int | None = None) -> None:
        for claimed in list(self._ready):
            if claimed.job.id == job_id and attempt in (None, claimed.attempt):
                self._ready.remove(claimed)
                log.info("job_abandoned", job_id=job_id, reason=reason)
        running = self._running.get(job_id)
        if running is None or (attempt is not None and running[0] != attempt):
            return
        running[1].cancel()
        log.info("job_abandoned", job_id=job_id, reason=reason)

    # Draining -----------------------------------------------------------------
    @staticmethod
    async def _until_stopped(tasks: list[asyncio.Task[None]]) -> None:
        """Wait for cancelled jobs to stop their remote work, cancelling again if a library
        swallowed the first cancellation (redis-py can, inside a command)."""
        for _ in range(CANCEL_ATTEMPTS):
            if not tasks:
                return
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S / CANCEL_ATTEMPTS)
            tasks = list(pending)
            for task in tasks:
                task.cancel()
        if tasks:
            log.warning("jobs_did_not_stop", jobs=[task.get_name() for task in tasks])

    async def _drain(self) -> None:
        """Stop claiming; let running jobs finish within the grace; hand the rest back."""
        log.info("worker_draining", worker_id=self.worker_id, running=len(self._running))
        await self._leave_idle_lists(self._woken)
        tasks = [task for _, task in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.drain_grace_s)
        unstarted = [(c.job.id, c.attempt) for c in self._ready]
        self._ready.clear()
        stopping = []
        for job_id, (attempt, task) in list(self._running.items()):
            task.cancel()
            stopping.append(task)
            unstarted.append((job_id, attempt))
        await self._until_stopped(stopping)
        for job_id, attempt in unstarted:
            with contextlib.suppress(StaleAttemptError):
                await self.queue.release(self.worker_id, job_id, attempt, "worker_draining")
        await self._flush_finished()
