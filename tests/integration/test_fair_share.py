"""Fair share across customers, running caps in the claim, waiting caps at submit."""

from __future__ import annotations

import pytest

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.customers import CustomerPolicy
from emp_queue.errors import CustomerCapError
from emp_queue.models import FailureClass, JobError

SIM = WorkerCapabilities(services=["sim"])


def jobs_of(customer: str, n: int, priority: int = 50) -> list[JobSpec]:
    return [
        JobSpec(service_required="sim", customer_id=customer, priority=priority, payload={"n": i})
        for i in range(n)
    ]


async def drain_one_by_one(queue: JobQueue, claims: int) -> list[str]:
    order = []
    for _ in range(claims):
        claimed = await queue.claim("w")
        if not claimed:
            break
        order.append(claimed[0].job.customer_id or "")
        await queue.complete("w", claimed[0].job.id, claimed[0].attempt, {})
    return order


async def test_a_late_customer_is_not_queued_behind_a_backlog(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    await job_queue.submit_many(jobs_of("A", 200))
    assert set(await drain_one_by_one(job_queue, 20)) == {"A"}
    await job_queue.submit_many(jobs_of("B", 10))
    order = await drain_one_by_one(job_queue, 40)
    assert order.index("B") < 2, order  # B's first job within the next 2 claims
    last_b = len(order) - 1 - order[::-1].index("B")
    assert order.count("B") == 10
    assert last_b < 100


async def test_fifo_within_a_customer_and_priority_before_share(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", SIM)
    await job_queue.submit_many(jobs_of("A", 5))
    await drain_one_by_one(job_queue, 3)  # A now has recent claims, B none
    await job_queue.submit_many(jobs_of("B", 3, priority=40))
    await job_queue.submit(JobSpec(service_required="sim", customer_id="A", priority=90))
    claimed = await job_queue.claim("w", count=10)
    got = [(c.job.customer_id, c.job.priority, c.job.payload) for c in claimed]
    # Priority goes before share: A's urgent job, then A's priority-50 jobs, then B's.
    assert got[0][:2] == ("A", 90)
    assert [p for c, _, p in got if c == "A"][1:] == [{"n": 3}, {"n": 4}]
    assert [p["n"] for c, _, p in got if c == "B"] == [0, 1, 2]
    assert [c for c, _, _ in got][1:] == ["A", "A", "B", "B", "B"]  # priority 50 before 40


async def test_weights_three_to_one(job_queue: JobQueue) -> None:
    await job_queue.set_customer_policy("A", CustomerPolicy(weight=3))
    await job_queue.register_worker("w", SIM)
    await job_queue.submit_many(jobs_of("A", 400) + jobs_of("B", 400))
    order = await drain_one_by_one(job_queue, 400)
    assert 0.70 <= order.count("A") / len(order) <= 0.80


async def test_running_cap_holds_and_others_use_the_rest(job_queue: JobQueue) -> None:
    await job_queue.set_customer_policy("A", CustomerPolicy(max_running=2))
    for n in range(6):
        await job_queue.register_worker(f"w{n}", SIM)
    await job_queue.submit_many(jobs_of("A", 10) + jobs_of("B", 3))
    taken = [c for n in range(6) for c in await job_queue.claim(f"w{n}")]
    assert [c.job.customer_id for c in taken].count("A") == 2
    assert [c.job.customer_id for c in taken].count("B") == 3
    view = await job_queue.customer("A")
    assert (view.running, view.waiting) == (2, 8)
    # A finished job frees a place; a failed-and-retried one too (back to waiting).
    a_jobs = [c for c in taken if c.job.customer_id == "A"]
    await job_queue.complete(a_jobs[0].job.worker_id or "", a_jobs[0].job.id, a_jobs[0].attempt, {})
    error = JobError(failure_class=FailureClass.JOB_FAULT, message="bad input")
    await job_queue.fail(a_jobs[1].job.worker_id or "", a_jobs[1].job.id, a_jobs[1].attempt, error)
    assert (await job_queue.customer("A")).running == 0
    more = await job_queue.claim("w0", count=5)
    assert [c.job.customer_id for c in more] == ["A", "A"]


async def test_cap_per_service(job_queue: JobQueue) -> None:
    policy = CustomerPolicy(max_running_by_service={"sim": 1})
    await job_queue.set_customer_policy("A", policy)
    await job_queue.register_worker("w", WorkerCapabilities(services=["sim", "other"]))
    await job_queue.submit_many(
        [*jobs_of("A", 3), JobSpec(service_required="other", customer_id="A")]
    )
    claimed = await job_queue.claim("w", count=10)
    assert sorted(c.job.service_required for c in claimed) == ["other", "sim"]


async def test_waiting_cap_refuses_submits(job_queue: JobQueue) -> None:
    await job_queue.set_customer_policy("A", CustomerPolicy(max_pending=3))
    await job_queue.submit_many(jobs_of("A", 2))
    with pytest.raises(
        CustomerCapError, match="has 2 waiting jobs; 2 more would pass its cap of 3"
    ):
        await job_queue.submit_many(jobs_of("A", 2))
    await job_queue.submit(JobSpec(service_required="sim", customer_id="A"))
    with pytest.raises(CustomerCapError, match="'A' is at its cap of 3 waiting jobs"):
        await job_queue.submit(JobSpec(service_required="sim", customer_id="A"))
    await job_queue.submit(JobSpec(service_required="sim", customer_id="B"))  # others unaffected
    # A started job no longer waits: room for one more.
    await job_queue.register_worker("w", SIM)
    await job_queue.claim("w")
    job = await job_queue.submit(JobSpec(service_required="sim", customer_id="A"))
    assert job.status is JobStatus.PENDING


async def test_counts_follow_cancel_release_and_lease_expiry(job_queue: JobQueue) -> None:
    queue = JobQueue(job_queue.redis, namespace=job_queue.keys.namespace, lease_s=0.05)
    await queue.register_worker("w", SIM)
    jobs = await queue.submit_many(jobs_of("A", 4))
    await queue.cancel(jobs[3].id)
    claimed = await queue.claim("w", count=3)
    assert ((await queue.customer("A")).running, (await queue.customer("A")).waiting) == (3, 0)
    await queue.release("w", claimed[0].job.id, claimed[0].attempt)
    await queue.cancel(claimed[1].job.id)
    assert ((await queue.customer("A")).running, (await queue.customer("A")).waiting) == (1, 1)
    await queue.redis.zadd(queue.keys.active, {claimed[2].job.id: 0})  # its lease ran out
    await queue.sweep()
    assert ((await queue.customer("A")).running, (await queue.customer("A")).waiting) == (0, 2)


async def test_policy_round_trip_and_delete(job_queue: JobQueue) -> None:
    policy = CustomerPolicy(
        weight=2.5, max_running=4, max_pending=100, max_running_by_service={"comfyui": 2}
    )
    view = await job_queue.set_customer_policy("acme", policy)
    assert view.policy == policy
    assert view.has_policy
    assert await job_queue.customers_with_policies() == ["acme"]
    assert await job_queue.delete_customer_policy("acme")
    view = await job_queue.customer("acme")
    assert view.policy == CustomerPolicy()
    assert not view.has_policy
