"""``JobQueue``: the only code that changes the queue's Redis keys.

Every change is one Lua script run (atomic); reads use plain commands. The
API, workers and machine agents all go through this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from emp_queue.core import customers, inspection
from emp_queue.core import derivation as derivation_rules
from emp_queue.core.codec import decode_job, submission
from emp_queue.core.customers import CustomerPolicy, CustomerView
from emp_queue.core.events import EventLog
from emp_queue.core.finish_notices import CHECK_S, FinishNotices
from emp_queue.core.group_commit import GroupCommit
from emp_queue.core.inspection import Explanation, JobPage, QueueDepth, WorkerInfo, WorkflowState
from emp_queue.core.keys import Keys, scoped_workflow_id
from emp_queue.core.matching import JobClass, canonical_json
from emp_queue.core.pools import PoolRules
from emp_queue.core.queue_reads import QueueReads
from emp_queue.core.replies import as_text
from emp_queue.core.scripts import Durability, ScriptRunner
from emp_queue.core.settings import CoreSettings
from emp_queue.core.worker_calls import WorkerCalls
from emp_queue.errors import (
    CustomerCapError,
    EmpError,
    InvalidTransitionError,
    JobNotFoundError,
    QueueDrainingError,
    UnknownDependencyError,
)
from emp_queue.models import Job, JobSpec, JobStatus

SUBMIT_CHUNK = 500
KNOWN_CLASSES_MAX = 10_000  # job kinds remembered by _prepare (then it starts afresh)

# A job ready for submit.lua: its script entry, its spec and its validated class.
PreparedJob = tuple[dict[str, Any], JobSpec, JobClass]


@dataclass(frozen=True)
class Backoff:
    """Retry delay: ``base_s * 2**(failures-1)`` capped at ``cap_s``, times a jitter in [0.5, 1)."""

    base_s: float = 1.0
    cap_s: float = 300.0
    retry_window_s: float | None = 600.0
    """A job still failing (service, worker faults) this long after its first failure is
    dead-lettered even with attempts left: retries must not run up hours. ``None``: no cap."""


@dataclass(frozen=True)
class SweepReport:
    promoted: int
    requeued: int
    dead_lettered: int
    expired: int
    workers_removed: int
    purged: int

    @property
    def total(self) -> int:
        return (
            self.promoted
            + self.requeued
            + self.dead_lettered
            + self.expired
            + self.workers_removed
            + self.purged
        )


class JobQueue(WorkerCalls, QueueReads):
    """Jobs, workers, leases and events of one namespace on one Redis/Valkey server (the
    calls a worker makes: :class:`~emp_queue.core.worker_calls.WorkerCalls`; the reads that
    need no script: :class:`~emp_queue.core.queue_reads.QueueReads`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "emp",
        lease_s: float = 30.0,
        retention_s: float = 7 * 24 * 3600,
        worker_timeout_s: float = 60.0,
        max_lost_leases: int = 10,
        events_maxlen: int = 100_000,
        backoff: Backoff | None = None,
        retry_avoid_grace_s: float = 2.0,
        derivation: derivation_rules.DerivationRules | None = None,
        durability: Durability | None = None,
        fair_share_half_life_s: float = 60.0,
        fair_share_window_s: float = 600.0,
        affinity_window_s: float = 30.0,
        affinity_hold_s: float = 2.0,
        affinity_busy_hold_s: float = 0.0,
        pools: PoolRules | None = None,
    ) -> None:
        self.redis = redis
        self.keys = Keys(namespace)
        self.lease_s = lease_s
        self.worker_timeout_s = worker_timeout_s
        self.max_lost_leases = max_lost_leases
        self.backoff = backoff or Backoff()
        self.retry_avoid_grace_s = retry_avoid_grace_s
        self.derivation = derivation or derivation_rules.DerivationRules()
        self.fair_share_half_life_ms = round(fair_share_half_life_s * 1000)
        self.fair_share_window_ms = round(fair_share_window_s * 1000)
        self.affinity_window_ms = round(affinity_window_s * 1000)
        self.affinity_hold_ms = round(affinity_hold_s * 1000)
        self.affinity_busy_hold_ms = round(affinity_busy_hold_s * 1000)
        self.pools = pools or PoolRules()
        self._pools_argument = self.pools.script_argument()
        self.events = EventLog(redis, self.keys, maxlen=events_maxlen)
        self._scripts = ScriptRunner(
            redis,
            self.keys,
            events_maxlen=events_maxlen,
            retention_ms=round(retention_s * 1000),
            durability=durability,
        )
        self._requirements: dict[str, dict[str, Any]] = {}
        self._submissions = GroupCommit(self._store)
        self._finish_notices: FinishNotices | None = None
        self._classes: dict[tuple[str, str | None, str, str], JobClass] = {}

    @classmethod
    def from_settings(cls, redis: Redis, settings: CoreSettings) -> JobQueue:
        return cls(
            redis,
            namespace=settings.namespace,
            lease_s=settings.lease_s,
            retention_s=settings.retention_s,
            worker_timeout_s=settings.worker_timeout_s,
            max_lost_leases=settings.max_lost_leases,
            events_maxlen=settings.events_maxlen,
            derivation=derivation_rules.DerivationRules.extended(
                settings.derive_service_formats, settings.derive_loader_inputs
            ),
            durability=Durability(settings.redis_wait_replicas, settings.redis_wait_timeout_ms),
            fair_share_half_life_s=settings.fair_share_half_life_s,
            backoff=Backoff(retry_window_s=settings.retry_window_s),
            fair_share_window_s=settings.fair_share_window_s,
            affinity_window_s=settings.affinity_window_s,
            affinity_hold_s=settings.affinity_hold_s,
            affinity_busy_hold_s=settings.affinity_busy_hold_s,
            pools=settings.pool_rules(),
        )

    # Submitting ---------------------------------------------------------------
    async def submit(self, spec: JobSpec) -> Job:
        """Submit one job. Concurrent submits are stored together, one script run in flight at
        a time (:mod:`emp_queue.core.group_commit`); a bad spec fails its own caller only."""
        outcome = await self._submissions.add(self._prepare(spec))
        if isinstance(outcome, EmpError):
            raise outcome
        return outcome

    async def submit_and_wait(self, spec: JobSpec, timeout_s: float | None = None) -> Job:
        """Submit one job and wait until it finishes (completed, failed, cancelled, timed out
        or expired): the finished job, its result or error. ``TimeoutError`` after
        ``timeout_s`` (the job is left as it is).

        The script that finishes the job tells this queue alone, finished record included (a
        channel of its own, :mod:`emp_queue.core.finish_notices`); nothing else of the job
        wakes the caller. A job
        whose id existed already is waited for too, by reading its status every ``CHECK_S``."""
        notices = await self._notices()
        entry, prepared_spec, job_class = self._prepare(spec)
        entry["fields"]["notify"] = notices.token
        job_id = entry["id"]
        finished = notices.expect(job_id)
        try:
            async with asyncio.timeout(timeout_s):
                outcome = await self._submissions.add((entry, prepared_spec, job_class))
                if isinstance(outcome, EmpError):
                    raise outcome
                status = outcome.status
                while not status.is_terminal:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(CHECK_S):
                            notice = await asyncio.shield(finished)
                            requirements = await self._class_requirements(notice.record["class"])
                            return decode_job(job_id, notice.record, requirements)
                    # No notice yet: it may have been lost (a reconnect), or the job existed.
                    raw = await self.redis.hget(self.keys.job(job_id), "status")
                    if raw is None:
                        break  # gone (deleted): get() raises JobNotFoundError
                    status = JobStatus(as_text(raw))
        finally:
            notices.forget(job_id)
        return await self.get(job_id)

    async def _notices(self) -> FinishNotices:
        if self._finish_notices is None:
            self._finish_notices = FinishNotices(self.redis, self.keys)
        await self._finish_notices.start()
        return self._finish_notices

    async def close(self) -> None:
        """Stop what this queue runs in the background (the finish notices of
        :meth:`submit_and_wait`); the Redis client is the caller's to close."""
        if self._finish_notices is not None:
            await self._finish_notices.close()

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Submit jobs in order; a job whose id exists is returned as it is, not duplicated.

        A batch that would take a customer past its waiting cap is refused whole
        (:class:`CustomerCapError`) before anything is stored; should a concurrent submit
        fill the cap meanwhile, the jobs stored before the refused one stay."""
        prepared = [self._prepare(spec) for spec in specs]
        await self._check_pending_caps(spec.customer_id for _, spec, _ in prepared)
        await self._check_draining({spec.service_required for _, spec, _ in prepared})
        outcomes = await self._store(prepared)
        for outcome in outcomes:
            if isinstance(outcome, EmpError):
                raise outcome
        return [outcome for outcome in outcomes if isinstance(outcome, Job)]

    async def _check_pending_caps(self, customer_ids: Iterable[str | None]) -> None:
        wanted: dict[str, int] = {}
        for customer_id in customer_ids:
            if customer_id is not None:
                wanted[customer_id] = wanted.get(customer_id, 0) + 1
        if not wanted:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for customer_id in wanted:
                pipe.hget(self.keys.customer(customer_id), "max_pending")
                pipe.hget(self.keys.customer_counts, f"waiting|{customer_id}")
            replies = await pipe.execute()
        for (customer_id, count), cap, waiting in zip(
            wanted.items(), replies[0::2], replies[1::2], strict=True
        ):
            now_waiting = max(0, int(waiting or 0))
            if cap is not None and now_waiting + count > int(cap):
                raise CustomerCapError(customer_id, int(cap), now_waiting, count)

    async def _check_draining(self, services: set[str]) -> None:
        # submit.lua refuses each job of a draining service; checked first, a batch is
        # refused whole rather than stored up to its first such job.
        ordered = sorted(services)
        if not ordered:
            return
        states = await self.redis.hmget(self.keys.queue_control, [f"service:{s}" for s in ordered])
        for service, state in zip(ordered, states, strict=True):
            if state is not None and as_text(state) == "draining":
                raise QueueDrainingError(service)

    async def _store(self, prepared: Sequence[PreparedJob]) -> list[Job | EmpError]:
        jobs: list[Job | EmpError] = []
        for start in range(0, len(prepared), SUBMIT_CHUNK):
            chunk = prepared[start : start + SUBMIT_CHUNK]
            payload = json.dumps([entry for entry, _, _ in chunk], separators=(",", ":"))
            replies = await self._scripts.run("submit", payload)
            existing = [as_text(r[0]) for r in replies if int(r[1]) == 0]
            found = {job.id: job for job in await self._get_many(existing)}
            for (entry, spec, job_class), reply in zip(chunk, replies, strict=True):
                job_id = entry["id"]
                if int(reply[1]) == 2:
                    jobs.append(CustomerCapError(spec.customer_id or "", int(reply[2])))
                elif int(reply[1]) == 3:
                    jobs.append(UnknownDependencyError(job_id, as_text(reply[2])))
                elif int(reply[1]) == 4:
                    jobs.append(QueueDrainingError(as_text(reply[2])))
                elif int(reply[1]) == 0:
                    jobs.append(found[job_id])
                else:
                    jobs.append(self._fresh_job(job_id, spec, job_class, reply))
        return jobs

    def _prepare(self, spec: JobSpec) -> PreparedJob:
        # Jobs are mostly a few kinds: validate and class each kind once, not once per job.
        # Models and nodes named by the payload join the requirements (core/derivation.py).
        service, requirements = spec.service_required, spec.requirements
        derived = derivation_rules.derive_for_job(
            service, spec.payload, requirements, self.derivation
        )
        kind = (
            service,
            spec.customer_id,
            canonical_json(requirements) if requirements else "",
            canonical_json(derived) if derived else "",
        )
        known = self._classes.get(kind)
        if known is None:
            known = derivation_rules.job_class(service, spec.customer_id, requirements, derived)
            if len(self._classes) >= KNOWN_CLASSES_MAX:
                self._classes.clear()
            self._classes[kind] = known
        job_id = spec.id or str(uuid.uuid4())
        return submission(job_id, spec, known), spec, known

    @staticmethod
    def _fresh_job(job_id: str, spec: JobSpec, job_class: JobClass, reply: list[Any]) -> Job:
        return Job(
            id=job_id,
            service_required=spec.service_required,
            priority=spec.priority,
            payload=spec.payload,
            requirements=dict(job_class.requirements),
            max_attempts=spec.max_attempts,
            status=JobStatus(as_text(reply[2])),
            attempt=1,
            seq=int(reply[3]),
            created_at=int(reply[4]),
            customer_id=spec.customer_id,
            workflow_id=spec.workflow_id,
            workflow_priority=spec.workflow_priority,
            workflow_datetime=spec.workflow_datetime,
            current_step=spec.current_step,
            total_steps=spec.total_steps,
            ctx=spec.ctx,
            timeout_s=spec.timeout_s,
            queue_ttl_s=spec.queue_ttl_s,
            webhook=spec.webhook,
            traceparent=spec.traceparent,
            not_before=int(reply[5]) if len(reply) > 5 else None,
            depends_on=spec.depends_on,
        )

    # Reading ------------------------------------------------------------------
    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        service: str | None = None,
        customer_id: str | None = None,
        workflow_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs newest first, filtered; pass ``next_cursor`` back for the next page.

        ``workflow_id`` names the workflow of ``customer_id`` (without one: the workflow
        submitted without a customer)."""
        if workflow_id is not None:
            workflow_id = scoped_workflow_id(customer_id, workflow_id)
        filters = {
            name: value
            for name, value in (
                ("status", status.value if status else None),
                ("service", service),
                ("customer_id", customer_id),
                ("workflow_id", workflow_id),
            )
            if value is not None
        }
        return await inspection.list_jobs(self, filters=filters, cursor=cursor, limit=limit)

    async def explain(self, job_id: str, *, own_customer_only: bool = False) -> Explanation:
        """Why a job waits: live workers, what each requirement filters, its position (among
        its own customer's jobs only, with ``own_customer_only``)."""
        return await inspection.explain(self, job_id, own_customer_only=own_customer_only)

    async def workers(self) -> list[WorkerInfo]:
        """Live workers with their capabilities and the jobs they hold."""
        return await inspection.workers(self)

    async def queue_depths(self) -> list[QueueDepth]:
        """Counts per service and status, and how long the front of each service waited."""
        return await inspection.queue_depths(self)

    async def workflow(self, workflow_id: str, customer_id: str | None = None) -> WorkflowState:
        """A customer's workflow (without one: a workflow submitted without a customer), its
        state and every job it submitted (JobNotFoundError if unknown)."""
        return await inspection.workflow(self, workflow_id, customer_id)

    # Customers ----------------------------------------------------------------
    async def set_customer_policy(self, customer_id: str, policy: CustomerPolicy) -> CustomerView:
        """Replace a customer's weight and caps; the next claim and submit apply them, and idle
        workers are woken at once for jobs a running cap held back that it now lets run."""
        await customers.set_policy(self.redis, self.keys, customer_id, policy)
        await self._scripts.run("lift_caps", customer_id)
        return await self.customer(customer_id)

    async def delete_customer_policy(self, customer_id: str) -> bool:
        """Back to weight 1 and no caps (idle workers woken for what a cap held back); True
        when there was a policy."""
        deleted = await customers.delete_policy(self.redis, self.keys, customer_id)
        await self._scripts.run("lift_caps", customer_id)
        return deleted

    # Workers ------------------------------------------------------------------
    async def wake_idle_workers(self, services: Sequence[str] = ()) -> None:
        """Wake idle workers for the jobs already waiting in these services' queues (none:
        every service), as a submit would: after a paused service or pool is resumed."""
        await self._scripts.run("wake_waiting", *services)

    async def evict_worker(self, worker_id: str, reason: str = "evicted") -> int:
        """Remove a worker now and requeue the jobs it held; returns how many were requeued."""
        ended = int(await self._scripts.run("evict_worker", worker_id, reason))
        if ended:
            await self.sweep()
        return ended

    # Client and operator actions ----------------------------------------------
    async def delete(self, job_id: str) -> tuple[str, str, Any]:
        """Delete a finished job now (what retention does later); its service, last status
        and result. A waiting or running job is refused: cancel it first."""
        try:
            service, status, result = await self._scripts.run("delete", job_id)
        except ResponseError as error:
            message = str(error)
            if message.startswith("NOT_FINISHED"):
                raise InvalidTransitionError(
                    f"job {job_id!r} is {message.split(' ', 1)[1]}; only a finished job can be "
                    "deleted — cancel it first"
                ) from error
            raise self._job_error(job_id, error) from error
        text = as_text(result)
        return as_text(service), as_text(status), json.loads(text) if text else None

    async def cancel(self, job_id: str, reason: str = "cancelled by client") -> Job:
        """Cancel a waiting or running job. A finished job is left as it is (raises)."""
        try:
            outcome, status = await self._scripts.run("cancel", job_id, reason)
        except ResponseError as error:
            raise self._job_error(job_id, error) from error
        if as_text(outcome) == "unchanged":
            raise InvalidTransitionError(
                f"job {job_id!r} is already {as_text(status)}; only waiting or running jobs "
                "can be cancelled"
            )
        return await self.get(job_id)

    async def deliver(self, job_id: str, result: Any, delegate: str) -> Job:
        """Complete a waiting or running job with a result produced outside the worker fleet
        (the original protocol's ``delegated_job_result``). A worker running it is told to
        stop, and its own result is then refused. A finished job is left as it is (raises)."""
        try:
            outcome, status = await self._scripts.run(
                "deliver", job_id, json.dumps(result, separators=(",", ":")), delegate
            )
        except ResponseError as error:
            raise self._job_error(job_id, error) from error
        if as_text(outcome) == "unchanged":
            raise InvalidTransitionError(
                f"job {job_id!r} is already {as_text(status)}; a delegated result completes only "
                "a waiting or running job"
            )
        return await self.get(job_id)

    async def retry(self, job_id: str, reason: str = "manual_retry") -> Job:
        """Requeue a failed, dead-lettered, timed-out, expired or cancelled job."""
        try:
            await self._scripts.run("retry", job_id, reason)
        except ResponseError as error:
            raise self._job_error(job_id, error) from error
        return await self.get(job_id)

    async def sweep(self, limit: int = 1000) -> SweepReport:
        """Run the housekeeping once (see ``sweep.lua``); safe from any number of processes."""
        reply = await self._scripts.run(
            "sweep", limit, round(self.worker_timeout_s * 1000), self.max_lost_leases
        )
        return SweepReport(*(int(n) for n in reply))

    async def sweep_unless_recent(self, gap_s: float) -> SweepReport | None:
        """Sweep unless some process of the namespace swept less than ``gap_s`` ago (then
        None): a fleet of N workers sweeps about once per ``gap_s``, not N times per interval."""
        gap_ms = max(1, round(gap_s * 1000))
        if not await self.redis.set(self.keys.sweep_lease, "1", nx=True, px=gap_ms):
            return None
        return await self.sweep()

    async def purge(self) -> int:
        """Delete every key of this namespace (SCAN + UNLINK: nothing outside it is touched)."""
        deleted = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=self.keys.prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self.redis.unlink(*batch)
        self._requirements.clear()
        return deleted

    # Helpers ------------------------------------------------------------------
    def _job_error(self, job_id: str, error: ResponseError) -> Exception:
        message = str(error)
        if message.startswith("NOT_FOUND"):
            return JobNotFoundError(f"no job {job_id!r} in namespace {self.keys.namespace!r}")
        if message.startswith("NOT_RETRYABLE"):
            status = message.split(" ", 1)[1]
            return InvalidTransitionError(
                f"job {job_id!r} is {status}; only failed, timed-out, expired or cancelled "
                "jobs can be retried"
            )
        return error
