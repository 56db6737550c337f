"""The Worker runtime against a real server: run, progress, cancel, timeout, drain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
import structlog.testing

from emp_queue import FailureClass, JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.events import STREAM_START
from emp_queue.core.worker_calls import ClaimOutcome
from emp_queue.errors import JobFailedError
from emp_queue.worker import JobContext, Worker, WorkerSettings
from emp_queue.worker.progress_buffer import ProgressBuffer

SIM = WorkerCapabilities(services=["sim"])


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 5)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def wait_for_status(queue: JobQueue, job_id: str, wanted: JobStatus) -> None:
    cursor = STREAM_START
    async with asyncio.timeout(10):
        while (await queue.get(job_id)).status is not wanted:
            if events := await queue.events.read(cursor, block_ms=200):
                cursor = events[-1].id


def make_worker(queue: JobQueue, handler: Callable[[JobContext], Any], **settings: Any) -> Worker:
    defaults: dict[str, Any] = {"heartbeat_interval_s": 0.2, "drain_grace_s": 0.5}
    return Worker(queue, "w1", SIM, handler, WorkerSettings(**{**defaults, **settings}))


async def test_runs_jobs_with_progress_and_records_results(job_queue: JobQueue) -> None:
    async def handler(context: JobContext) -> dict[str, Any]:
        await context.report_progress(50, "half way")
        await asyncio.sleep(0.05)  # still working when the report goes out
        return {"doubled": context.job.payload["n"] * 2}

    async with running(make_worker(job_queue, handler, concurrency=4, prefetch=4)):
        jobs = await job_queue.submit_many(
            [JobSpec(service_required="sim", payload={"n": n}) for n in range(20)]
        )
        for job in jobs:
            await wait_for_status(job_queue, job.id, JobStatus.COMPLETED)
    results = [(await job_queue.get(job.id)).result for job in jobs]
    assert results == [{"doubled": n * 2} for n in range(20)]
    progress_events = [e for e in await job_queue.events.read() if e.type == "update_job_progress"]
    assert {e.data.get("message") for e in progress_events} == {"half way"}


async def test_a_report_not_yet_sent_when_the_job_ends_is_dropped(job_queue: JobQueue) -> None:
    # The handler does not wait for its report; a job that ends before the report went out
    # (here: in the same step) is recorded by its result alone, without a progress call.
    reported = asyncio.Event()

    async def handler(context: JobContext) -> str:
        await context.report_progress(10, "started")
        reported.set()
        return "done"

    async with running(make_worker(job_queue, handler)):
        job = await job_queue.submit(JobSpec(service_required="sim"))
        await wait_for_status(job_queue, job.id, JobStatus.COMPLETED)
    assert reported.is_set()
    done = await job_queue.get(job.id)
    assert (done.result, done.progress, done.attempt) == ("done", 100.0, 1)
    types = [e.type for e in await job_queue.events.read() if e.job_id == job.id]
    assert "update_job_progress" not in types
    assert types[-1] == "complete_job"


async def test_reports_reach_redis_in_order_while_the_handler_goes_on(
    job_queue: JobQueue,
) -> None:
    async def handler(context: JobContext) -> str:
        for step in range(1, 21):
            await context.report_progress(step * 5, f"step {step}")
        await asyncio.sleep(0.3)  # the queued reports go out meanwhile
        return "done"

    async with running(make_worker(job_queue, handler)):
        job = await job_queue.submit(JobSpec(service_required="sim"))
        await wait_for_status(job_queue, job.id, JobStatus.COMPLETED)
    messages = [
        e.data["message"]
        for e in await job_queue.events.read()
        if e.job_id == job.id and e.type == "update_job_progress"
    ]
    assert messages == [f"step {step}" for step in range(1, 21)]


async def test_a_refused_report_tells_the_worker_to_abandon_the_attempt(
    job_queue: JobQueue,
) -> None:
    # A handler no longer learns from its report's error that the attempt is over (it does
    # not wait for the report): the buffer tells the worker, which abandons the attempt.
    await job_queue.register_worker("w1", SIM)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    (claimed,) = await job_queue.claim("w1")
    await job_queue.cancel(job.id)
    refused: asyncio.Queue[str] = asyncio.Queue()
    buffer = ProgressBuffer(job_queue, "w1", job.id, claimed.attempt, on_stale=refused.put_nowait)
    await buffer.report(50, "after the cancel")
    assert await asyncio.wait_for(refused.get(), 5) == "cancelled"
    buffer.close()


async def test_cancel_aborts_the_running_handler_within_a_second(job_queue: JobQueue) -> None:
    started, aborted = asyncio.Event(), asyncio.Event()

    async def handler(_context: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            aborted.set()
            raise

    async with running(make_worker(job_queue, handler, heartbeat_interval_s=5)):
        job = await job_queue.submit(JobSpec(service_required="sim"))
        await asyncio.wait_for(started.wait(), 5)
        await job_queue.cancel(job.id)
        await asyncio.wait_for(aborted.wait(), 1.0)
    assert (await job_queue.get(job.id)).status is JobStatus.CANCELLED


async def test_execution_timeout_stops_the_work(job_queue: JobQueue) -> None:
    async def handler(_context: JobContext) -> None:
        await asyncio.sleep(30)

    async with running(make_worker(job_queue, handler)):
        job = await job_queue.submit(JobSpec(service_required="sim", timeout_s=0.2))
        await wait_for_status(job_queue, job.id, JobStatus.TIMEOUT)
    error = (await job_queue.get(job.id)).error
    assert error is not None
    assert error.failure_class is FailureClass.TIMEOUT


async def test_failure_classes_decide_the_outcome(job_queue: JobQueue) -> None:
    async def handler(context: JobContext) -> None:
        if context.job.payload["kind"] == "bad":
            raise JobFailedError("invalid workflow", failure_class=FailureClass.JOB_FAULT)
        raise RuntimeError("worker bug")

    async with running(make_worker(job_queue, handler)):
        bad = await job_queue.submit(JobSpec(service_required="sim", payload={"kind": "bad"}))
        crash = await job_queue.submit(
            JobSpec(service_required="sim", payload={"kind": "crash"}, max_attempts=1)
        )
        await wait_for_status(job_queue, bad.id, JobStatus.FAILED)
        await wait_for_status(job_queue, crash.id, JobStatus.FAILED)
    bad_error = (await job_queue.get(bad.id)).error
    crash_job = await job_queue.get(crash.id)
    assert bad_error is not None
    assert bad_error.failure_class is FailureClass.JOB_FAULT
    assert crash_job.error is not None
    assert crash_job.error.failure_class is FailureClass.WORKER_FAULT
    assert crash_job.dead_lettered


async def test_drain_hands_unfinished_and_prefetched_jobs_back(job_queue: JobQueue) -> None:
    started = asyncio.Event()

    async def handler(_context: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)

    worker = make_worker(job_queue, handler, concurrency=1, prefetch=2)
    async with running(worker):
        jobs = await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(3)])
        await asyncio.wait_for(started.wait(), 5)
    after = [await job_queue.get(job.id) for job in jobs]
    # Back in the queue, never failed; unworkable now because the only worker has left.
    assert [job.status for job in after] == [JobStatus.UNWORKABLE] * 3
    assert [job.failures for job in after] == [0, 0, 0]
    assert all(job.attempt == 2 for job in after)
    assert await job_queue.live_workers() == []


async def test_drain_finishes_when_a_job_swallows_its_first_cancellation(
    job_queue: JobQueue,
) -> None:
    # Some libraries (redis-py inside a command) swallow a CancelledError; the drain must
    # still stop the job and hand it back instead of hanging until the process is killed.
    started = asyncio.Event()

    async def stubborn(context: JobContext) -> dict[str, Any]:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a misbehaving library would
            await asyncio.sleep(60)
        await asyncio.sleep(60)
        return {}

    worker = make_worker(job_queue, stubborn, drain_grace_s=0.1)
    job = await job_queue.submit(JobSpec(service_required="sim"))
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 10)

    assert (await job_queue.get(job.id)).status in (JobStatus.PENDING, JobStatus.UNWORKABLE)


class ClaimRacingSubmit(JobQueue):
    """A queue where a job is submitted while the worker's first empty claim is in flight."""

    raced = False

    async def claim_until_due(  # type: ignore[override]
        self, worker_id: str, count: int = 1
    ) -> ClaimOutcome:
        outcome = await super().claim_until_due(worker_id, count)
        if not self.raced and not outcome.jobs:
            self.raced = True
            await self.submit(JobSpec(service_required="sim", payload={"n": 1}))
            await asyncio.sleep(0.2)  # the work notice reaches the worker before this returns
        return outcome


async def test_work_announced_during_a_claim_is_not_missed(job_queue: JobQueue) -> None:
    queue = ClaimRacingSubmit(job_queue.redis, namespace=job_queue.keys.namespace)

    ran = asyncio.Event()

    async def handler(context: JobContext) -> dict[str, Any]:
        ran.set()
        return {"n": context.job.payload["n"]}

    worker = Worker(queue, "w1", SIM, handler, WorkerSettings(idle_poll_s=30))
    async with running(worker):
        await asyncio.wait_for(ran.wait(), 5)  # not the 30 s safety poll
    assert queue.raced


class CountingClaims(JobQueue):
    """Counts the claims the worker makes, alone and with its results."""

    claims = 0
    completes_with_claim = 0

    async def claim_until_due(
        self, worker_id: str, count: int = 1, lease_s: float | None = None
    ) -> ClaimOutcome:
        self.claims += 1
        return await super().claim_until_due(worker_id, count, lease_s)

    async def complete_and_claim(self, *args: Any, **kwargs: Any) -> Any:
        self.completes_with_claim += 1
        return await super().complete_and_claim(*args, **kwargs)


async def test_an_idle_worker_makes_no_claim_of_its_own_per_job(job_queue: JobQueue) -> None:
    """Jobs one at a time to an idle worker: each comes in its wake notice, claimed for it by
    the submit (decision 0073), and the slot it frees is claimed for by the result's send
    (complete_and_claim): the end of the job does not also wake the claim loop for a claim
    of the same slot. So per job one script call of the worker's, the result's send."""
    queue = CountingClaims(job_queue.redis, namespace=job_queue.keys.namespace)

    async def handler(context: JobContext) -> dict[str, Any]:
        return {"n": context.job.payload["n"]}

    async with running(make_worker(queue, handler, concurrency=1, idle_poll_s=30)) as worker:
        await asyncio.sleep(0.2)  # the first claim finds nothing: listed idle
        before = queue.claims
        for n in range(10):
            done = await queue.submit_and_wait(
                JobSpec(service_required="sim", payload={"n": n}), timeout_s=5
            )
            assert done.result == {"n": n}
            await asyncio.sleep(0.05)  # the worker is idle again before the next
        assert not worker.busy
    assert queue.claims - before == 0
    assert queue.completes_with_claim == 10


async def test_a_due_time_learnt_with_a_result_shortens_the_idle_wait(
    job_queue: JobQueue,
) -> None:
    """A job scheduled while the worker runs another: the claim sent with that job's result
    finds nothing yet but says when the scheduled one is due, and the claim loop's wait
    (30 s here, sweeps every 30 s too) ends then."""
    ran: dict[str, float] = {}

    async def handler(context: JobContext) -> dict[str, Any]:
        if context.job.payload["n"] == 0:
            await asyncio.sleep(0.3)
        ran[context.job.id] = asyncio.get_running_loop().time()
        return {}

    worker = make_worker(job_queue, handler, concurrency=1, idle_poll_s=30, sweep_interval_s=30)
    async with running(worker):
        await asyncio.sleep(0.2)  # idle, listed
        first = await job_queue.submit(JobSpec(service_required="sim", payload={"n": 0}))
        await asyncio.sleep(0.1)  # running it
        later = await job_queue.submit(JobSpec(service_required="sim", payload={"n": 1}, delay_s=1))
        submitted = asyncio.get_running_loop().time()
        await wait_for_status(job_queue, later.id, JobStatus.COMPLETED)
    assert first.id in ran
    assert 0.9 <= ran[later.id] - submitted < 3.0


async def test_idle_workers_start_a_scheduled_job_on_time_with_one_claim_at_its_time(
    job_queue: JobQueue,
) -> None:
    """Four idle workers (30 s safety polls and sweeps): a job due in 1 s runs then, and the
    moment costs one claim — the watcher's (decision 0072) — not one per idle worker."""
    queue = CountingClaims(job_queue.redis, namespace=job_queue.keys.namespace)
    ran: dict[str, float] = {}

    async def handler(context: JobContext) -> dict[str, Any]:
        ran[context.job.id] = asyncio.get_running_loop().time()
        return {}

    settings: dict[str, Any] = {"heartbeat_interval_s": 5, "idle_poll_s": 30}
    workers = [
        Worker(queue, f"w{i}", SIM, handler, WorkerSettings(sweep_interval_s=30, **settings))
        for i in range(4)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(running(worker))
        await asyncio.sleep(0.3)  # each found nothing: listed idle
        before = queue.claims
        job = await queue.submit(JobSpec(service_required="sim", payload={}, delay_s=1))
        submitted = asyncio.get_running_loop().time()
        await wait_for_status(queue, job.id, JobStatus.COMPLETED)
    assert 0.9 <= ran[job.id] - submitted < 1.5
    # One worker woken to watch (its claim finds nothing), its claim at the due time: 2.
    assert queue.claims - before == 2


async def test_a_scheduled_job_due_while_the_watcher_runs_a_long_one_starts_on_time(
    job_queue: JobQueue,
) -> None:
    """The watcher takes the job it watched and is busy for 3 s: the next scheduled job, due
    1 s later, is started on time by another idle worker (the watch was handed on)."""
    ran: dict[str, float] = {}

    async def handler(context: JobContext) -> dict[str, Any]:
        ran[context.job.id] = asyncio.get_running_loop().time()
        await asyncio.sleep(context.job.payload["s"])
        return {}

    settings = WorkerSettings(heartbeat_interval_s=5, idle_poll_s=30, sweep_interval_s=30)
    workers = [Worker(job_queue, f"w{i}", SIM, handler, settings) for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(running(worker))
        await asyncio.sleep(0.3)  # each found nothing: listed idle
        long = await job_queue.submit(
            JobSpec(service_required="sim", payload={"s": 3}, delay_s=0.5)
        )
        short = await job_queue.submit(
            JobSpec(service_required="sim", payload={"s": 0}, delay_s=1.5)
        )
        submitted = asyncio.get_running_loop().time()
        await wait_for_status(job_queue, short.id, JobStatus.COMPLETED)
    assert 0.4 <= ran[long.id] - submitted < 1.0
    assert 1.4 <= ran[short.id] - submitted < 2.0


async def test_an_evicted_live_worker_registers_again_and_keeps_working(
    job_queue: JobQueue,
) -> None:
    async def handler(context: JobContext) -> str:
        return context.job.id

    worker = make_worker(job_queue, handler, idle_poll_s=0.1)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 5)
    try:
        for _ in range(3):  # evicted again and again, as an operator might
            assert await job_queue.deregister_worker("w1", "removed_by_operator")
            (job,) = await job_queue.submit_many([JobSpec(service_required="sim")])
            await wait_for_status(job_queue, job.id, JobStatus.COMPLETED)
        assert not task.done()
        assert [w.worker_id for w in await job_queue.workers()] == ["w1"]
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def test_a_timeout_inside_the_handler_is_a_worker_fault_not_the_jobs_deadline(
    job_queue: JobQueue,
) -> None:
    async def handler(_context: JobContext) -> None:
        raise TimeoutError("read from the service timed out")

    async with running(make_worker(job_queue, handler)):
        no_deadline = await job_queue.submit(JobSpec(service_required="sim", max_attempts=1))
        long_deadline = await job_queue.submit(
            JobSpec(service_required="sim", max_attempts=1, timeout_s=600)
        )
        for job in (no_deadline, long_deadline):
            await wait_for_status(job_queue, job.id, JobStatus.FAILED)
    for job in (no_deadline, long_deadline):
        error = (await job_queue.get(job.id)).error
        assert error is not None
        assert error.failure_class is FailureClass.WORKER_FAULT
        assert error.message == "TimeoutError: read from the service timed out"


async def test_a_superseded_attempt_is_not_logged_as_a_crash(job_queue: JobQueue) -> None:
    started = asyncio.Event()

    async def handler(context: JobContext) -> None:
        started.set()
        await job_queue.cancel(context.job.id)
        # Reporting on a cancelled attempt is refused: the handler's work is superseded.
        with contextlib.suppress(asyncio.CancelledError):
            await context.report_progress(10, "still going")
        await context.report_progress(20, "after the cancel")

    with structlog.testing.capture_logs() as logs:
        async with running(make_worker(job_queue, handler, heartbeat_interval_s=5)):
            job = await job_queue.submit(JobSpec(service_required="sim"))
            await asyncio.wait_for(started.wait(), 5)
            await wait_for_status(job_queue, job.id, JobStatus.CANCELLED)
            await asyncio.sleep(0.2)
    events = [entry["event"] for entry in logs]
    assert "job_handler_crashed" not in events
    assert (await job_queue.get(job.id)).status is JobStatus.CANCELLED
