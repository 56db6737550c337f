"""Listings from indexes: every filter of the list route, newest first, in pages never empty
while jobs match, following jobs as their status changes and forgetting deleted ones."""

from __future__ import annotations

import itertools

from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.core.keys import Keys

SERVICES = ("sim", "other")
CUSTOMERS = ("acme", "globex", None)


async def all_pages(job_queue: JobQueue, limit: int, **filters: object) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = await job_queue.list_jobs(cursor=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        pages.append([job.id for job in page.jobs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_a_rare_status_is_on_the_first_page_among_many_jobs(job_queue: JobQueue) -> None:
    """The audit's case: 12,001 jobs, one cancelled, found at once (was: two empty pages)."""
    await job_queue.submit(JobSpec(id="the-one", service_required="sim"))
    await job_queue.cancel("the-one")
    await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(12_000)])

    page = await job_queue.list_jobs(status=JobStatus.CANCELLED, limit=50)
    assert [job.id for job in page.jobs] == ["the-one"]
    assert page.next_cursor is None


async def test_every_filter_combination_matches_a_plain_scan(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w", WorkerCapabilities(services=["sim"]))
    specs = [
        JobSpec(id=f"j{i:03d}", service_required=SERVICES[i % 2], customer_id=CUSTOMERS[i % 3])
        for i in range(60)
    ]
    await job_queue.submit_many(specs)
    claimed = await job_queue.claim("w", count=7)
    for claim in claimed[:4]:
        await job_queue.complete("w", claim.job.id, claim.attempt, {"ok": True})
    for job_id in ("j001", "j005", "j010"):
        await job_queue.cancel(job_id)

    everything = (await job_queue.list_jobs(limit=500)).jobs
    assert len(everything) == 60
    statuses = {job.status for job in everything}
    for status, service, customer in itertools.product(
        [None, *statuses], [None, *SERVICES], [None, "acme", "globex"]
    ):
        expected = [
            job.id
            for job in everything
            if (status is None or job.status is status)
            and (service is None or job.service_required == service)
            and (customer is None or job.customer_id == customer)
        ]
        filters = {"status": status, "service": service, "customer_id": customer}
        pages = await all_pages(job_queue, 4, **filters)
        assert [job_id for page in pages for job_id in page] == expected, filters
        assert all(pages[:-1]), f"an empty page before the end for {filters}"
        assert len(pages[-1]) > 0 or expected == []


async def test_deleted_and_purged_jobs_leave_the_indexes(job_queue: JobQueue) -> None:
    job = await job_queue.submit(JobSpec(service_required="sim", customer_id="acme"))
    await job_queue.cancel(job.id)
    await job_queue.delete(job.id)
    assert (await job_queue.list_jobs(status=JobStatus.CANCELLED)).jobs == []
    assert (await job_queue.list_jobs(customer_id="acme")).jobs == []
    keys = Keys(job_queue.keys.namespace)
    leftovers = [
        key async for key in job_queue.redis.scan_iter(f"{keys.prefix}list:*") if key is not None
    ]
    for key in leftovers:
        assert await job_queue.redis.zcard(key) == 0
