"""Jobs handed over in the wake notice (decision 0073): the run that wakes an idle worker that
registered for it claims for that worker, and the notice carries the claim, so the worker
starts without a claim of its own; exactly-once holds when the notice is never read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio.client import PubSub

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.matching import capabilities_fingerprint
from emp_queue.core.worker_calls import ClaimOutcome
from emp_queue.errors import StaleAttemptError
from emp_queue.worker import JobContext, Worker, WorkerSettings

SIM = WorkerCapabilities(services=["sim"])
QUIET_S = 0.3
"""How long a subscriber is watched for a notice that must not come (notices reach the socket
before the script's reply does)."""


@pytest.fixture
async def subscribers(job_queue: JobQueue) -> AsyncIterator[list[PubSub]]:
    opened: list[PubSub] = []
    yield opened
    for pubsub in opened:
        await pubsub.aclose()


async def idle(
    queue: JobQueue,
    opened: list[PubSub],
    worker_id: str,
    capacity: int | None = 1,
    *,
    subscribe: bool = True,
) -> PubSub:
    """A worker as the broker sees it when idle: registered (for hand-overs with a
    capacity), subscribed to its wake channel, listed by a claim that found nothing."""
    await queue.register_worker(worker_id, SIM, handoff_capacity=capacity)
    pubsub = queue.redis.pubsub()
    opened.append(pubsub)
    if subscribe:
        await pubsub.subscribe(queue.keys.worker_wake(worker_id))
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
    assert await queue.claim(worker_id, count=capacity or 1) == []
    return pubsub


async def notices(
    queue: JobQueue, pubsub: PubSub, worker_id: str = "w-1"
) -> list[tuple[int, ClaimOutcome] | None]:
    """The wake notices that came: a hand-over each, or None for "claim now"."""
    came: list[tuple[int, ClaimOutcome] | None] = []
    while (message := await pubsub.get_message(timeout=QUIET_S)) is not None:
        if message["type"] == "message":
            came.append(await queue.handed_over(worker_id, message["data"]))
    return came


async def submit(queue: JobQueue, count: int = 1) -> list[str]:
    specs = [JobSpec(service_required="sim", payload={"n": n}) for n in range(count)]
    return [job.id for job in await queue.submit_many(specs)]


async def test_the_notice_carries_the_job_claimed_for_the_woken_worker(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    pubsub = await idle(job_queue, subscribers, "w-1", capacity=2)

    [job_id] = await submit(job_queue)

    [handed] = await notices(job_queue, pubsub)
    assert handed is not None
    asked, claim = handed
    assert asked == 2
    assert [(c.job.id, c.attempt, c.job.payload) for c in claim.jobs] == [(job_id, 1, {"n": 0})]
    assert claim.jobs[0].lease_until_ms > 0
    job = await job_queue.get(job_id)
    assert (job.status, job.worker_id) == (JobStatus.ASSIGNED, "w-1")
    # It holds the job as if it had claimed it: its result is accepted, nothing is left.
    await job_queue.complete("w-1", job_id, 1, {"ok": True})
    assert (await job_queue.get(job_id)).status == JobStatus.COMPLETED
    assert await job_queue.claim("w-1", count=2) == []


async def test_one_worker_takes_a_batch_up_to_its_free_slots_and_the_next_the_rest(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    first = await idle(job_queue, subscribers, "w-1", capacity=3)
    second = await idle(job_queue, subscribers, "w-2", capacity=3)

    ids = await submit(job_queue, 4)

    pairs = ((first, "w-1"), (second, "w-2"))
    handed = [h for p, worker in pairs for h in await notices(job_queue, p, worker)]
    assert all(h is not None for h in handed)
    taken = sorted(c.job.id for h in handed if h is not None for c in h[1].jobs)
    assert taken == sorted(ids)
    assert sorted(len(h[1].jobs) for h in handed if h is not None) == [1, 3]


async def test_a_notice_too_large_for_the_jobs_names_them_and_they_are_read(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    """Two jobs of 700 kB each handed over at once would make a 1.4 MB notice (a pub/sub
    client that falls far enough behind is disconnected): the notice names them, and
    ``handed_over`` reads them."""
    pubsub = await idle(job_queue, subscribers, "w-1", capacity=2)
    big = "x" * 700_000
    specs = [JobSpec(service_required="sim", payload={"n": n, "blob": big}) for n in range(2)]
    ids = [job.id for job in await job_queue.submit_many(specs)]

    message = None
    while message is None or message["type"] != "message":
        message = await pubsub.get_message(timeout=1)
    assert len(message["data"]) < 1000  # ids, not records
    handed = await job_queue.handed_over("w-1", message["data"])

    assert handed is not None
    asked, claim = handed
    assert asked == 2
    assert sorted(c.job.id for c in claim.jobs) == sorted(ids)
    assert all(c.job.payload["blob"] == big and c.attempt == 1 for c in claim.jobs)
    assert all(c.lease_until_ms > 0 for c in claim.jobs)


async def test_a_worker_not_listening_gets_nothing_and_the_job_waits(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    """Claimed for a worker whose notice no one reads, a job would wait for its lease: the run
    claims only for a worker that listens, and drops one that does not from the idle list."""
    await idle(job_queue, subscribers, "deaf", subscribe=False)

    [job_id] = await submit(job_queue)

    assert (await job_queue.get(job_id)).status == JobStatus.PENDING
    idle_list = job_queue.keys.idle_workers(capabilities_fingerprint(SIM))
    assert await job_queue.redis.zscore(idle_list, "deaf") is None


async def test_a_worker_that_claims_itself_is_only_told_to_claim(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    pubsub = await idle(job_queue, subscribers, "plain", capacity=None)

    [job_id] = await submit(job_queue)

    assert await notices(job_queue, pubsub, "plain") == [None]
    assert (await job_queue.get(job_id)).status == JobStatus.PENDING
    assert [c.job.id for c in await job_queue.claim("plain")] == [job_id]


async def test_no_claim_leaves_a_worker_holding_more_than_its_capacity(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    """Its own claim may be on its way while a run hands it a job: the claim that comes second
    finds the worker's slots taken, whatever count it asks for."""
    await idle(job_queue, subscribers, "w-1", capacity=2)
    ids = await submit(job_queue, 4)  # two handed over to w-1, two left waiting

    assert await job_queue.claim("w-1", count=2) == []
    await job_queue.complete("w-1", ids[0], 1, {})
    assert [c.job.id for c in await job_queue.claim("w-1", count=2)] == [ids[2]]


async def test_leaving_hands_back_a_job_handed_over_in_a_notice_never_read(
    job_queue: JobQueue, subscribers: list[PubSub]
) -> None:
    """A worker that stops between the hand-over and reading it: deregistering with
    ``release_held`` puts the job back now, its attempt moved on, its failures untouched."""
    await idle(job_queue, subscribers, "w-1")
    [job_id] = await submit(job_queue)
    assert (await job_queue.get(job_id)).worker_id == "w-1"

    assert await job_queue.deregister_worker("w-1", "shutdown", release_held=True)

    job = await job_queue.get(job_id)
    assert (job.status, job.attempt, job.worker_id) == (JobStatus.PENDING, 2, None)
    await job_queue.register_worker("w-2", SIM)
    [claimed] = await job_queue.claim("w-2")
    assert (claimed.job.id, claimed.attempt) == (job_id, 2)
    with pytest.raises(StaleAttemptError):
        await job_queue.complete("w-1", job_id, 1, {})


class Recorder:
    """A handler that records the jobs it ran, in order."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, context: JobContext) -> dict[str, Any]:
        self.ran.append(context.job.id)
        return {}


@asynccontextmanager
async def running_idle(worker: Worker) -> AsyncIterator[Worker]:
    """Run the worker until the block ends; the block starts once its first claim has
    listed it as idle."""
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 5)
        idle_list = worker.queue.keys.idle_workers(capabilities_fingerprint(SIM))
        while await worker.queue.redis.zscore(idle_list, worker.worker_id) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


class StopsAsTheJobComes(Worker):
    """A worker told to stop just as a job is handed over to it (a SIGTERM at that moment)."""

    def _take_handed_over(self, asked: int, claim: ClaimOutcome) -> None:
        self.stop()
        super()._take_handed_over(asked, claim)


async def test_a_job_handed_to_a_worker_that_is_stopping_goes_back_at_once(
    job_queue: JobQueue,
) -> None:
    handler = Recorder()
    worker = StopsAsTheJobComes(
        job_queue, "stopping", SIM, handler, WorkerSettings(drain_grace_s=1)
    )
    async with running_idle(worker):
        await job_queue.register_worker("next", SIM)  # registered, not listed: never woken
        [job_id] = await submit(job_queue)
        async with asyncio.timeout(10):
            while (await job_queue.get(job_id)).worker_id == "stopping":  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # released by the drain

    job = await job_queue.get(job_id)
    assert handler.ran == []
    assert (job.status, job.attempt, job.failures, job.lost_leases) == (JobStatus.PENDING, 2, 0, 0)
    [claimed] = await job_queue.claim("next")
    await job_queue.complete("next", job_id, claimed.attempt, {"ok": True})
    assert (await job_queue.get(job_id)).status == JobStatus.COMPLETED


class LosesTheFirstNotice(Worker):
    """A worker whose first hand-over notice never arrives (lost with a connection)."""

    lost = False

    def _take_handed_over(self, asked: int, claim: ClaimOutcome) -> None:
        if not self.lost:
            self.lost = True
            return
        super()._take_handed_over(asked, claim)


async def test_a_job_assigned_to_a_worker_that_never_heard_of_it_runs_at_its_next_heartbeat(
    job_queue: JobQueue,
) -> None:
    """A job claimed for the worker whose notice (or claim reply) it never read: its next
    heartbeat finds the job and it runs it, instead of the job waiting out a 30 s lease."""
    handler = Recorder()
    settings = WorkerSettings(heartbeat_interval_s=0.1, idle_poll_s=30, drain_grace_s=1)
    worker = LosesTheFirstNotice(job_queue, "w-1", SIM, handler, settings)
    async with running_idle(worker):
        done = await job_queue.submit_and_wait(JobSpec(service_required="sim", payload={}), 5)

    assert worker.lost
    assert done.status is JobStatus.COMPLETED
    assert handler.ran == [done.id]
    assert (done.attempt, done.lost_leases) == (1, 0)


class SlowResults(JobQueue):
    """Results reach the broker 1 s after the job ended (a slow link)."""

    async def complete_and_claim(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(1.0)
        return await super().complete_and_claim(*args, **kwargs)


async def test_a_finished_job_whose_result_is_on_its_way_is_not_run_again(
    job_queue: JobQueue,
) -> None:
    """While the result travels the job is still assigned to the worker and no longer running
    there, so heartbeats find it unlisted: the worker knows it, and does not run it again."""
    queue = SlowResults(job_queue.redis, namespace=job_queue.keys.namespace)
    handler = Recorder()
    settings = WorkerSettings(heartbeat_interval_s=0.1, idle_poll_s=30, drain_grace_s=2)
    async with running_idle(Worker(queue, "w-1", SIM, handler, settings)):
        done = await queue.submit_and_wait(JobSpec(service_required="sim", payload={}), 5)

    assert done.status is JobStatus.COMPLETED
    assert handler.ran == [done.id]
