"""Waking idle workers: only those that can take the new work, only as many as it needs
(``core/lua/wake.lua``), and never leaving work behind a worker that cannot claim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.client import PubSub

from emp_queue import FailureClass, JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.customers import CustomerPolicy
from emp_queue.core.events import STREAM_START
from emp_queue.core.queue import Backoff
from emp_queue.core.queue_control import ControlTarget, QueueState, set_state
from emp_queue.core.worker_calls import ClaimOutcome
from emp_queue.errors import JobFailedError
from emp_queue.models import ClaimedJob, JobError
from emp_queue.worker import JobContext, Worker, WorkerSettings
from emp_queue.worker.health import ServiceHealth

SIM = WorkerCapabilities(services=["sim"])
OTHER = WorkerCapabilities(services=["other"])
QUIET_S = 0.3
"""How long a listener is watched for a notice that must not come (published notices reach
the socket before the script's reply does, so any that came would be here by then)."""


class Listener:
    """An idle worker as the broker sees it: registered, listed by an empty claim, and
    subscribed to its own wake channel."""

    def __init__(self, queue: JobQueue, worker_id: str, pubsub: PubSub) -> None:
        self.queue, self.worker_id, self.pubsub = queue, worker_id, pubsub

    async def wakes(self, quiet_s: float = QUIET_S) -> int:
        count = 0
        while (message := await self.pubsub.get_message(timeout=quiet_s)) is not None:
            count += message["type"] == "message"
        return count

    async def claim(self, count: int = 1) -> list[ClaimedJob]:
        return await self.queue.claim(self.worker_id, count=count)


@pytest.fixture
async def listeners(job_queue: JobQueue) -> AsyncIterator[list[PubSub]]:
    opened: list[PubSub] = []
    yield opened
    for pubsub in opened:
        await pubsub.aclose()


async def listen(
    queue: JobQueue, opened: list[PubSub], worker_id: str, caps: WorkerCapabilities, free: int = 1
) -> Listener:
    await queue.register_worker(worker_id, caps)
    pubsub = queue.redis.pubsub()
    opened.append(pubsub)
    await pubsub.subscribe(queue.keys.worker_wake(worker_id))
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    assert await queue.claim(worker_id, count=free) == []  # lists it as idle
    return Listener(queue, worker_id, pubsub)


async def submit(queue: JobQueue, count: int = 1, service: str = "sim") -> None:
    await queue.submit_many([JobSpec(service_required=service, payload={}) for _ in range(count)])


async def test_workers_of_another_service_are_not_woken(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    others = [await listen(job_queue, listeners, f"other-{i}", OTHER) for i in range(5)]
    sim = await listen(job_queue, listeners, "sim-0", SIM)

    await submit(job_queue)

    assert [await o.wakes() for o in others] == [0] * 5
    assert await sim.wakes() == 1
    assert len(await sim.claim()) == 1


@pytest.mark.slow
async def test_as_many_workers_are_woken_as_there_are_new_jobs(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    idle = [await listen(job_queue, listeners, f"w{i}", SIM) for i in range(6)]

    await submit(job_queue, 1)
    assert sum([await w.wakes() for w in idle]) == 1
    await submit(job_queue, 3)
    assert sum([await w.wakes() for w in idle]) == 3


async def test_one_worker_with_free_slots_covers_as_many_jobs(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    wide = await listen(job_queue, listeners, "wide", SIM, free=4)
    narrow = await listen(job_queue, listeners, "narrow", SIM, free=1)

    await submit(job_queue, 4)

    assert (await wide.wakes(), await narrow.wakes()) == (1, 0)
    assert len(await wide.claim(4)) == 4


async def test_a_worker_no_one_listens_for_is_dropped_and_the_next_one_woken(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    gone = await listen(job_queue, listeners, "w9", SIM)  # woken first: its id sorts last
    alive = await listen(job_queue, listeners, "w1", SIM)
    await gone.pubsub.unsubscribe()
    await gone.pubsub.get_message(timeout=1)

    await submit(job_queue)

    assert await alive.wakes() == 1
    idle: list[bytes] = await job_queue.redis.zrange(
        job_queue.keys.idle_workers(await fingerprint(job_queue, "w9")), 0, -1
    )
    assert b"w9" not in idle


async def fingerprint(queue: JobQueue, worker_id: str) -> str:
    raw = await queue.redis.hget(queue.keys.worker(worker_id), "fingerprint")
    assert raw is not None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def test_a_woken_worker_that_declines_hands_the_work_on(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    first = await listen(job_queue, listeners, "w9", SIM)
    second = await listen(job_queue, listeners, "w1", SIM)
    await submit(job_queue)
    assert (await first.wakes(), await second.wakes()) == (1, 0)

    assert await job_queue.decline_wake("w9") is True  # say its service went down

    assert (await first.wakes(), await second.wakes()) == (0, 1)
    assert len(await second.claim()) == 1


async def test_a_woken_worker_that_is_removed_hands_the_work_on(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    first = await listen(job_queue, listeners, "w9", SIM)
    second = await listen(job_queue, listeners, "w1", SIM)
    await submit(job_queue)
    assert await first.wakes() == 1

    await job_queue.deregister_worker("w9", "hung")

    assert await second.wakes() == 1


async def test_the_worker_a_job_failed_on_is_not_woken_for_its_retry(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    queue = JobQueue(job_queue.redis, namespace=job_queue.keys.namespace, backoff=Backoff(0.0))
    holder = await listen(queue, listeners, "w9", SIM)
    other = await listen(queue, listeners, "w1", SIM)
    await submit(queue)
    assert (await holder.wakes(), await other.wakes()) == (1, 0)
    [claimed] = await holder.claim()
    assert await holder.claim(2) == []  # listed again, with more free slots than w1

    error = JobError(failure_class=FailureClass.WORKER_FAULT, message="crashed")
    assert await queue.fail("w9", claimed.job.id, 1, error) is JobStatus.PENDING  # no backoff

    assert (await holder.wakes(), await other.wakes()) == (0, 1)
    assert len(await other.claim()) == 1


async def test_a_pinned_worker_is_woken_only_for_its_workflow(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    pinned = await listen(
        job_queue, listeners, "pinned", WorkerCapabilities(services=["sim"], workflow_id="wf1")
    )
    await submit(job_queue)
    assert await pinned.wakes() == 0

    await job_queue.submit(JobSpec(service_required="sim", payload={}, workflow_id="wf1"))
    assert await pinned.wakes() == 1
    assert len(await pinned.claim()) == 1


class CountingQueue(JobQueue):
    """The real queue, counting the claims that came back empty."""

    empty_claims = 0
    listed = asyncio.Event()  # set once `LISTED` claims came back empty (every worker idle)
    LISTED = 16

    async def claim_until_due(
        self, worker_id: str, count: int = 1, lease_s: float | None = None
    ) -> ClaimOutcome:
        outcome = await super().claim_until_due(worker_id, count, lease_s)
        if not outcome.jobs:
            CountingQueue.empty_claims += 1
            if CountingQueue.empty_claims >= self.LISTED:
                CountingQueue.listed.set()
        return outcome


async def until_completed(queue: JobQueue, job_ids: list[str]) -> None:
    cursor = STREAM_START
    waiting = set(job_ids)
    while waiting:
        waiting = {i for i in waiting if (await queue.get(i)).status is not JobStatus.COMPLETED}
        if events := await queue.events.read(cursor, block_ms=200):
            cursor = events[-1].id


async def test_idle_runtime_workers_take_every_job_without_a_herd(
    job_queue: JobQueue,
) -> None:
    queue = CountingQueue(job_queue.redis, namespace=job_queue.keys.namespace)
    CountingQueue.empty_claims = 0
    CountingQueue.listed = asyncio.Event()

    async def handler(context: JobContext) -> str:
        return "done"

    # A long idle poll: every job must reach a worker by a wake-up, not by the safety tick.
    settings = WorkerSettings(idle_poll_s=60, heartbeat_interval_s=5, sweep_interval_s=60)
    workers = [Worker(queue, f"w{i}", SIM, handler, settings) for i in range(8)]
    others = [Worker(queue, f"o{i}", OTHER, handler, settings) for i in range(8)]
    tasks = [asyncio.create_task(w.run()) for w in [*workers, *others]]
    try:
        async with asyncio.timeout(30):
            await CountingQueue.listed.wait()  # each worker listed itself by a first claim
            baseline = CountingQueue.empty_claims
            jobs = []
            for _ in range(30):
                jobs.append(await queue.submit(JobSpec(service_required="sim", payload={})))
                await asyncio.sleep(0.01)
            await until_completed(queue, [job.id for job in jobs])
    finally:
        for w in [*workers, *others]:
            w.stop()
        await asyncio.gather(*tasks)
    useless_per_job = (CountingQueue.empty_claims - baseline) / len(jobs)
    assert useless_per_job <= 1.0


async def test_a_paused_service_wakes_no_one_until_it_is_resumed(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    idle = await listen(job_queue, listeners, "w1", SIM)
    keys = job_queue.keys
    await set_state(job_queue.redis, keys, ControlTarget.SERVICE, "sim", QueueState.PAUSED)
    await submit(job_queue, 2)
    assert await idle.wakes() == 0

    await set_state(job_queue.redis, keys, ControlTarget.SERVICE, "sim", QueueState.OPEN)
    await job_queue.wake_idle_workers(["sim"])

    assert await idle.wakes() == 1
    assert len(await idle.claim(2)) == 2


async def test_a_worker_whose_service_is_down_never_holds_up_new_work(
    job_queue: JobQueue,
) -> None:
    service_alive = True

    async def probe() -> None:
        if not service_alive:
            raise JobFailedError("connection refused", failure_class="service_fault")

    async def handler(context: JobContext) -> str:
        return "done"

    health = ServiceHealth(probe, interval_s=0.05, failures_to_down=1)
    # A long idle poll: the job must not wait for the safety tick. "z-down" sorts last, so
    # among equally free idle workers it is the one a wake-up would pick.
    settings = WorkerSettings(idle_poll_s=60, heartbeat_interval_s=5, sweep_interval_s=60)
    down = Worker(job_queue, "z-down", SIM, handler, settings, health=health)
    up = Worker(job_queue, "a-up", SIM, handler, settings)
    tasks = [asyncio.create_task(w.run()) for w in (down, up)]
    try:
        async with asyncio.timeout(20):
            await down.registered.wait()
            await up.registered.wait()
            fingerprint_key = job_queue.keys.idle_workers(await fingerprint(job_queue, "a-up"))
            while await job_queue.redis.zcard(fingerprint_key) < 2:  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.02)
            service_alive = False
            while health.is_up:  # noqa: ASYNC110 (the health watch flips it)
                await asyncio.sleep(0.02)
            job = await job_queue.submit(JobSpec(service_required="sim", payload={}))
            await until_completed(job_queue, [job.id])
    finally:
        for w in (down, up):
            w.stop()
        await asyncio.gather(*tasks)
    assert (await job_queue.get(job.id)).worker_id == "a-up"


async def test_a_job_that_frees_a_running_cap_wakes_a_worker_for_the_capped_work(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    await job_queue.set_customer_policy("acme", CustomerPolicy(max_running=1))
    await job_queue.submit_many(
        [JobSpec(service_required="sim", payload={}, customer_id="acme") for _ in range(3)]
    )
    await job_queue.register_worker("busy", SIM)
    (running,) = await job_queue.claim("busy")
    # The others pass over acme's jobs (acme is at its cap) and are listed idle.
    idle = [await listen(job_queue, listeners, f"sim-{i}", SIM) for i in range(3)]
    assert [await worker.wakes() for worker in idle] == [0, 0, 0]

    await job_queue.complete("busy", running.job.id, running.attempt, {})

    woken = [await worker.wakes() for worker in idle]
    assert sorted(woken) == [0, 0, 1], "one place freed: one worker woken, at once"
    taker = idle[woken.index(1)]
    (next_job,) = await taker.claim()
    assert next_job.job.customer_id == "acme"


async def test_raising_or_removing_a_running_cap_wakes_workers_for_the_work_it_held_back(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    await job_queue.set_customer_policy("acme", CustomerPolicy(max_running=1))
    await job_queue.submit_many(
        [JobSpec(service_required="sim", payload={}, customer_id="acme") for _ in range(4)]
    )
    await job_queue.register_worker("busy", SIM)
    await job_queue.claim("busy")
    idle = [await listen(job_queue, listeners, f"sim-{i}", SIM) for i in range(4)]
    capped = job_queue.keys.customer_capped("acme")

    # Lowered (or kept): nothing more may run, nobody is woken, the work stays noted.
    await job_queue.set_customer_policy("acme", CustomerPolicy(max_running=1, weight=2))
    assert [await worker.wakes() for worker in idle] == [0, 0, 0, 0]
    assert await job_queue.redis.scard(capped) == 1

    # Raised by one: one place, one worker woken at once (not at its 30 s safety claim).
    await job_queue.set_customer_policy("acme", CustomerPolicy(max_running=2))
    woken = [await worker.wakes() for worker in idle]
    assert sorted(woken) == [0, 0, 0, 1]
    taker = idle[woken.index(1)]
    (second,) = await taker.claim()
    assert second.job.customer_id == "acme"
    assert await taker.claim() == []  # at the cap again: noted, listed idle

    # Removed: the two jobs left may run, two workers are woken.
    assert await job_queue.delete_customer_policy("acme")
    assert sorted([await worker.wakes() for worker in idle]) == [0, 0, 1, 1]
    assert await job_queue.redis.scard(capped) == 0


async def test_a_customer_still_at_its_cap_wakes_nobody(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    await job_queue.set_customer_policy("acme", CustomerPolicy(max_running_by_service={"sim": 1}))
    await job_queue.submit_many(
        [JobSpec(service_required="sim", payload={}, customer_id="acme") for _ in range(2)]
        + [JobSpec(service_required="other", payload={}, customer_id="acme")]
    )
    await job_queue.register_worker("busy", WorkerCapabilities(services=["sim", "other"]))
    claimed = await job_queue.claim("busy", count=2)
    assert sorted(c.job.service_required for c in claimed) == ["other", "sim"]
    idle = await listen(job_queue, listeners, "sim-0", SIM)

    # The job that ends is of another service: acme is still at its cap for sim.
    other = next(c for c in claimed if c.job.service_required == "other")
    await job_queue.complete("busy", other.job.id, other.attempt, {})
    assert await idle.wakes() == 0

    sim = next(c for c in claimed if c.job.service_required == "sim")
    await job_queue.complete("busy", sim.job.id, sim.attempt, {})
    assert await idle.wakes() == 1


async def scheduled(queue: JobQueue, delay_s: float) -> str:
    return (await queue.submit(JobSpec(service_required="sim", payload={}, delay_s=delay_s))).id


async def woken_now(idle: list[Listener]) -> list[Listener]:
    # Notices are published before the script's reply: any there is is in the socket already.
    counts = [await worker.wakes(quiet_s=0.05) for worker in idle]
    return [worker for worker, count in zip(idle, counts, strict=True) if count]


async def test_one_idle_worker_watches_the_scheduled_head_not_every_one(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    idle = [await listen(job_queue, listeners, f"sim-{i}", SIM) for i in range(4)]
    job_id = await scheduled(job_queue, 1.5)

    # Nobody watched the (empty) scheduled set: one idle worker is woken to watch it.
    (watcher,) = await woken_now(idle)
    outcome = await job_queue.claim_until_due(watcher.worker_id)
    assert outcome.jobs == []
    assert outcome.due_in_s is not None
    assert 0.5 < outcome.due_in_s <= 1.5
    for other in idle:
        if other is not watcher:  # their claims are not told the moment: no herd then
            assert (await job_queue.claim_until_due(other.worker_id)).due_in_s is None

    await asyncio.sleep(outcome.due_in_s + 0.05)
    (claimed,) = await watcher.claim()  # its claim promotes the job, and it takes it
    assert claimed.job.id == job_id
    assert await woken_now(idle) == []  # nobody is woken for the job its own claim took


async def watching_in_30_s(queue: JobQueue, opened: list[PubSub]) -> list[Listener]:
    """Three idle workers, a job due in 30 s, and the one of them that watches it, first."""
    idle = [await listen(queue, opened, f"sim-{i}", SIM) for i in range(3)]
    await scheduled(queue, 30)
    (watcher,) = await woken_now(idle)
    assert (await queue.claim_until_due(watcher.worker_id)).due_in_s is not None
    return [watcher, *(w for w in idle if w is not watcher)]


async def test_a_job_scheduled_before_the_watched_moment_wakes_the_watcher(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    idle = await watching_in_30_s(job_queue, listeners)
    watcher = idle[0]

    await scheduled(job_queue, 60)  # later than the watched moment: nobody is told
    assert await woken_now(idle) == []
    await scheduled(job_queue, 5)  # sooner: the watcher claims now and learns it
    assert await woken_now(idle) == [watcher]
    due = (await job_queue.claim_until_due(watcher.worker_id)).due_in_s
    assert due is not None
    assert 4 < due <= 5


async def test_a_watcher_that_stopped_listening_is_replaced(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    watcher, *others = await watching_in_30_s(job_queue, listeners)
    watch = await job_queue.redis.get(job_queue.keys.scheduled_watch)
    assert watch is not None
    assert watch.decode().startswith(f"{watcher.worker_id}|")
    await watcher.pubsub.unsubscribe()  # gone (its wake notices reach no one)
    await watcher.pubsub.get_message(timeout=1)

    await scheduled(job_queue, 5)
    (replacement,) = await woken_now(others)
    due = (await job_queue.claim_until_due(replacement.worker_id)).due_in_s
    assert due is not None
    assert 4 < due <= 5


async def test_a_batch_of_scheduled_jobs_wakes_one_worker_however_ordered(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    idle = [await listen(job_queue, listeners, f"sim-{i}", SIM) for i in range(4)]
    # Each job due sooner than the one before: one worker is told, once, and learns the first.
    await job_queue.submit_many(
        [JobSpec(service_required="sim", payload={}, delay_s=delay) for delay in (40, 30, 20, 10)]
    )
    (watcher,) = await woken_now(idle)
    due = (await job_queue.claim_until_due(watcher.worker_id)).due_in_s
    assert due is not None
    assert 9 < due <= 10


async def test_a_watcher_that_shuts_down_hands_the_watch_on(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    watcher, *others = await watching_in_30_s(job_queue, listeners)
    assert await job_queue.deregister_worker(watcher.worker_id, "shutdown")

    (successor,) = await woken_now(others)
    due = (await job_queue.claim_until_due(successor.worker_id)).due_in_s
    assert due is not None
    assert 25 < due <= 30


async def test_a_watcher_that_fills_its_slots_at_the_due_time_hands_the_watch_on(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    idle = [await listen(job_queue, listeners, f"sim-{i}", SIM) for i in range(3)]
    first = await scheduled(job_queue, 0.6)
    (watcher,) = await woken_now(idle)
    due = (await job_queue.claim_until_due(watcher.worker_id)).due_in_s
    assert due is not None
    await scheduled(job_queue, 30)
    assert await woken_now(idle) == []

    await asyncio.sleep(due + 0.05)
    (taken,) = await watcher.claim()  # busy with it now, maybe for long
    assert taken.job.id == first
    (successor,) = await woken_now([w for w in idle if w is not watcher])
    due = (await job_queue.claim_until_due(successor.worker_id)).due_in_s
    assert due is not None
    assert 25 < due <= 30


async def test_a_watcher_that_takes_other_work_hands_the_watch_on(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    watcher, *others = await watching_in_30_s(job_queue, listeners)
    await job_queue.submit(JobSpec(service_required="sim", payload={}))
    await woken_now([watcher, *others])  # whoever the new job woke
    assert len(await watcher.claim()) == 1  # the watcher took it: busy, maybe for long

    (successor,) = await woken_now(others)
    due = (await job_queue.claim_until_due(successor.worker_id)).due_in_s
    assert due is not None
    assert 25 < due <= 30


async def test_with_no_idle_worker_for_the_job_an_idle_worker_of_another_service_watches(
    job_queue: JobQueue, listeners: list[PubSub]
) -> None:
    """Any claim promotes due jobs, and the promotion wakes whoever can take them."""
    other = await listen(job_queue, listeners, "other-0", OTHER)
    await scheduled(job_queue, 30)
    assert await woken_now([other]) == [other]
    due = (await job_queue.claim_until_due(other.worker_id)).due_in_s
    assert due is not None
    assert 25 < due <= 30
