"""What a worker calls on the queue: joining and leaving, leases, claims, results.

``WorkerCalls`` is the part of :class:`~emp_queue.core.queue.JobQueue` that the worker
runtime (and the simulated workers of the benchmarks) use: each method is one script run
(``core/lua/``) and the decoding of its reply. It holds no state of its own; ``JobQueue``
provides the attributes declared below.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from emp_queue.core.codec import decode_job, flat_to_map, requirements_of
from emp_queue.core.keys import Keys
from emp_queue.core.matching import canonical_json, capabilities_document
from emp_queue.core.matching import capabilities_fingerprint as fingerprint_of
from emp_queue.core.replies import as_text
from emp_queue.core.scripts import ScriptRunner
from emp_queue.errors import StaleAttemptError, WorkerNotRegisteredError
from emp_queue.models import ClaimedJob, Job, JobError, JobStatus, WorkerCapabilities

if TYPE_CHECKING:
    from emp_queue.core.queue import Backoff


@dataclass(frozen=True)
class Revocation:
    """An attempt a worker must abandon, and why (cancelled, superseded, ...)."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class Heartbeat:
    revocations: list[Revocation]
    unheard: list[tuple[str, int]]
    """(job id, attempt) of jobs assigned to the worker that it did not list: claimed for it
    by a run or a claim whose reply never reached it (the worker takes up those it never
    saw, decision 0073)."""


@dataclass(frozen=True)
class ClaimOutcome:
    jobs: list[ClaimedJob]
    due_in_s: float | None
    """How soon a job this claim left for others becomes claimable by the worker, or (when
    it took fewer jobs than asked) the first scheduled job becomes due; None: neither."""


@dataclass(frozen=True)
class CompletionOutcome:
    job_id: str
    accepted: bool
    reason: str | None = None


def _stale(job_id: str, attempt: int, error: ResponseError) -> StaleAttemptError | None:
    message = str(error)
    if message.startswith("STALE "):
        return StaleAttemptError(job_id, attempt, message.removeprefix("STALE "))
    return None


class WorkerCalls:
    """The worker's side of :class:`~emp_queue.core.queue.JobQueue` (a base class of it)."""

    redis: Redis
    keys: Keys
    lease_s: float
    backoff: Backoff
    retry_avoid_grace_s: float
    fair_share_half_life_ms: int
    fair_share_window_ms: int
    affinity_window_ms: int
    affinity_hold_ms: int
    affinity_busy_hold_ms: int
    _pools_argument: str
    _scripts: ScriptRunner
    _requirements: dict[str, dict[str, Any]]

    if TYPE_CHECKING:  # JobQueue's

        async def get_many(self, job_ids: Sequence[str]) -> list[Job]: ...

    async def register_worker(
        self,
        worker_id: str,
        capabilities: WorkerCapabilities,
        *,
        machine_id: str | None = None,
        status: str = "idle",
        handoff_capacity: int | None = None,
    ) -> bool:
        """Register (or update) a worker; True when it is new.

        With ``handoff_capacity`` the worker takes jobs in its wake notices: the run that
        wakes it claims for it, with this queue's claim settings, and the notice carries the
        claim (read it with :meth:`handed_over`); no claim ever leaves it holding more than
        ``handoff_capacity`` jobs (decision 0073). Without, a notice only says "claim now"."""
        if handoff_capacity is not None and handoff_capacity < 1:
            raise ValueError(f"handoff_capacity {handoff_capacity!r} must be at least 1")
        document = canonical_json(capabilities_document(capabilities))
        settings = canonical_json(self._claim_args(0, None)[1:]) if handoff_capacity else ""
        reply = await self._scripts.run(
            "register_worker",
            worker_id,
            fingerprint_of(capabilities),
            document,
            machine_id or "",
            capabilities.workflow_id or "",
            status,
            handoff_capacity or "",
            settings,
            *(capabilities.nodes.names if capabilities.nodes else ()),
        )
        return bool(reply)

    async def deregister_worker(
        self, worker_id: str, reason: str = "shutdown", *, release_held: bool = False
    ) -> bool:
        """Remove a worker from the registry. With ``release_held`` (the worker itself, on
        its way out) the jobs it still holds go back to the queue now, as :meth:`release`
        would, instead of when their leases run out."""
        flag = "1" if release_held else ""
        return bool(await self._scripts.run("deregister_worker", worker_id, reason, flag))

    async def decline_wake(self, worker_id: str) -> bool:
        """The worker cannot claim now (service down, draining, claims held): take it off the
        idle lists and wake other idle workers for the work it may have been woken for. Its
        next claim lists it again. False when the worker is not registered."""
        return bool(await self._scripts.run("decline_wake", worker_id))

    async def heartbeat(
        self, worker_id: str, running: Iterable[tuple[str, int]] = (), status: str | None = None
    ) -> Heartbeat:
        """Renew the worker's liveness and the leases of the attempts it runs (``running``);
        returns the attempts it must abandon and the jobs assigned to it that it did not
        list (:class:`Heartbeat`)."""
        pairs = [str(item) for job_id, attempt in running for item in (job_id, attempt)]
        try:
            revoked, unheard = await self._scripts.run(
                "heartbeat", worker_id, self._lease_ms(None), status or "", *pairs
            )
        except ResponseError as error:
            raise self._worker_error(worker_id, error) from error
        return Heartbeat(
            [Revocation(as_text(job_id), as_text(reason)) for job_id, reason in revoked],
            [(as_text(job_id), int(attempt)) for job_id, attempt in unheard],
        )

    # Claiming and reporting ---------------------------------------------------
    async def claim(
        self, worker_id: str, count: int = 1, lease_s: float | None = None
    ) -> list[ClaimedJob]:
        """Lease up to ``count`` of the best jobs this worker can run (none: empty list)."""
        return (await self.claim_until_due(worker_id, count, lease_s)).jobs

    async def claim_until_due(
        self, worker_id: str, count: int = 1, lease_s: float | None = None
    ) -> ClaimOutcome:
        """As :meth:`claim`, and when a job the claim left (deferred for this worker: pool
        fallback, affinity hold) becomes claimable by it, which nothing announces."""
        try:
            reply = await self._scripts.run("claim", worker_id, *self._claim_args(count, lease_s))
        except ResponseError as error:
            raise self._worker_error(worker_id, error) from error
        return self._claim_outcome(reply)

    def _claim_args(self, count: int, lease_s: float | None) -> list[str | int]:
        """claim.lua's ARGV[5..13]."""
        return [
            count,
            self._lease_ms(lease_s),
            round(self.retry_avoid_grace_s * 1000),
            self.fair_share_half_life_ms,
            self.fair_share_window_ms,
            self.affinity_window_ms,
            self.affinity_hold_ms,
            self._pools_argument,
            self.affinity_busy_hold_ms,
        ]

    async def handed_over(
        self, worker_id: str, notice: bytes | str
    ) -> tuple[int, ClaimOutcome] | None:
        """A wake notice of ``worker_id``'s: how many jobs the run that woke it claimed for
        at most, and that claim; None for a plain "claim now" notice. A notice too large to
        carry the jobs (``wake.lua``) names them: they are read here, those still assigned to
        the worker kept (one round trip; none for the usual notice)."""
        text = as_text(notice)
        if text == "1":
            return None
        asked, reply = json.loads(text)
        named = [entry[0] for entry in reply[2:] if len(entry) == 1]
        if not named:
            return int(asked), self._claim_outcome(reply)
        outcome = self._claim_outcome([reply[0], reply[1]])
        lease_until = int(reply[0])
        for job in await self.get_many(named):
            if job.status is JobStatus.ASSIGNED and job.worker_id == worker_id:
                outcome.jobs.append(
                    ClaimedJob(job=job, attempt=job.attempt, lease_until_ms=lease_until)
                )
        return int(asked), outcome

    def _claim_outcome(self, reply: list[Any]) -> ClaimOutcome:
        lease_until, due_in_ms = int(reply[0]), int(reply[1])
        claimed = []
        for raw_id, descriptor, flat in reply[2:]:
            job_id = as_text(raw_id)
            record = flat_to_map(flat)
            class_id = record["class"]
            if class_id not in self._requirements:
                self._requirements[class_id] = requirements_of(descriptor)
            job = decode_job(job_id, record, self._requirements[class_id])
            claimed.append(ClaimedJob(job=job, attempt=job.attempt, lease_until_ms=lease_until))
        return ClaimOutcome(claimed, due_in_ms / 1000 if due_in_ms > 0 else None)

    async def report_progress(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        progress: float | None = None,
        message: str | None = None,
    ) -> None:
        """Record progress (0-100) and renew the lease; the first report marks in_progress."""
        if progress is not None and not 0 <= progress <= 100:
            raise ValueError(f"progress {progress!r} is outside 0-100")
        await self._worker_call(
            "progress",
            worker_id,
            job_id,
            attempt,
            self._lease_ms(None),
            "" if progress is None else repr(float(progress)),
            message or "",
        )

    async def complete(self, worker_id: str, job_id: str, attempt: int, result: Any) -> None:
        (outcome,) = await self.complete_many(worker_id, [(job_id, attempt, result)])
        if not outcome.accepted:
            raise StaleAttemptError(job_id, attempt, outcome.reason or "rejected")

    async def complete_many(
        self, worker_id: str, results: Sequence[tuple[str, int, Any]]
    ) -> list[CompletionOutcome]:
        """Record several results in one round trip; each is accepted or rejected on its own."""
        replies = await self._scripts.run("complete", worker_id, *self._result_args(results))
        return self._completion_outcomes(results, replies)

    async def complete_and_claim(
        self,
        worker_id: str,
        results: Sequence[tuple[str, int, Any]],
        count: int,
        lease_s: float | None = None,
    ) -> tuple[list[CompletionOutcome], ClaimOutcome | None]:
        """:meth:`complete_many`, then :meth:`claim_until_due` for ``count`` jobs, in one round
        trip and one script run (decision 0070). The claim is ``None`` when the worker is not
        registered (swept or evicted): the results are recorded all the same."""
        if count < 1:
            raise ValueError(f"count {count!r} must be at least 1 (use complete_many)")
        args = [*self._claim_args(count, lease_s), *self._result_args(results)]
        completions, claim = await self._scripts.run("complete_claim", worker_id, *args)
        outcomes = self._completion_outcomes(results, completions)
        return outcomes, None if claim == 0 else self._claim_outcome(claim)

    @staticmethod
    def _result_args(results: Sequence[tuple[str, int, Any]]) -> list[str]:
        return [
            str(item)
            for job_id, attempt, result in results
            for item in (job_id, attempt, json.dumps(result, separators=(",", ":")))
        ]

    @staticmethod
    def _completion_outcomes(
        results: Sequence[tuple[str, int, Any]], replies: Sequence[Any]
    ) -> list[CompletionOutcome]:
        outcomes = []
        for (job_id, _, _), reply in zip(results, replies, strict=True):
            text = as_text(reply)
            accepted = text == "ok"
            reason = None if accepted else text.removeprefix("STALE ")
            outcomes.append(CompletionOutcome(job_id, accepted, reason))
        return outcomes

    async def fail(self, worker_id: str, job_id: str, attempt: int, error: JobError) -> JobStatus:
        """Report a failure; returns the job's new status (pending when a retry is scheduled)."""
        reply = await self._worker_call(
            "fail",
            worker_id,
            job_id,
            attempt,
            error.failure_class.value,
            error.model_dump_json(),
            round(self.backoff.base_s * 1000),
            round(self.backoff.cap_s * 1000),
            repr(random.random()),
            round((self.backoff.retry_window_s or 0) * 1000),
        )
        return JobStatus(as_text(reply))

    async def release(
        self, worker_id: str, job_id: str, attempt: int, reason: str = "worker_draining"
    ) -> JobStatus:
        """Hand an unfinished job back to the queue (not a failure)."""
        reply = await self._worker_call("release", worker_id, job_id, attempt, reason)
        return JobStatus(as_text(reply))

    async def hand_back_for_outage(
        self, worker_id: str, job_id: str, attempt: int, budget: int
    ) -> JobStatus | None:
        """Hand a job back because the worker's service is down: no failure counted, at most
        ``budget`` times per job; ``None`` when the job has used its budget up (fail it)."""
        reply = as_text(
            await self._worker_call("release", worker_id, job_id, attempt, "service_down", budget)
        )
        return None if reply == "budget_spent" else JobStatus(reply)

    async def retry_wakeups_in_s(self, failed_here: Sequence[str] = ()) -> list[float]:
        """Seconds until the next scheduled retry becomes claimable, and until each job of
        ``failed_here`` (retries this worker caused) leaves the avoid grace, when this worker
        may take it too. Measured on the Redis clock, the one the scripts use."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zrange(self.keys.scheduled, 0, 0, withscores=True)
            for job_id in failed_here:
                pipe.hget(self.keys.job(job_id), "not_before")
            (seconds, micros), head, *not_before = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) / 1000
        due_ms = [float(score) for _, score in head]
        grace_ms = self.retry_avoid_grace_s * 1000
        due_ms += [float(value) + grace_ms for value in not_before if value is not None]
        return [max(0.0, (due - now_ms) / 1000) for due in due_ms]

    async def _worker_call(
        self, operation: str, worker_id: str, job_id: str, attempt: int, *args: str | int
    ) -> Any:
        try:
            return await self._scripts.run(operation, worker_id, job_id, attempt, *args)
        except ResponseError as error:
            stale = _stale(job_id, attempt, error)
            if stale is None:
                raise
            raise stale from error

    def _lease_ms(self, lease_s: float | None) -> int:
        return round((self.lease_s if lease_s is None else lease_s) * 1000)

    @staticmethod
    def _worker_error(worker_id: str, error: ResponseError) -> Exception:
        if str(error).startswith("WORKER_NOT_REGISTERED"):
            return WorkerNotRegisteredError(
                f"worker {worker_id!r} is not registered (or was removed after going silent); "
                "register it again before claiming"
            )
        return error
