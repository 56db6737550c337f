"""``GET /api/jobs`` answered from indexes: every filter (status, service, customer, and any
two or three of them) reads at most a page from each of a few sorted sets and merges them,
newest first, so a page costs the same with a thousand jobs or a million, and a page is never
empty while matching jobs remain.

The indexes (kept by ``lua/listing.lua`` on every status change) hold each job once per
kind: by status and service, by status, service and customer, and by customer. A filter that
an index does not match exactly is the union of a few of them: a status over every service
(the ``services`` set), a service over every status, a customer's status over its services.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from emp_queue.core.replies import as_text
from emp_queue.models import JobStatus

if TYPE_CHECKING:
    from emp_queue.core.queue import JobQueue

STATUSES = tuple(status.value for status in JobStatus)


async def index_keys(queue: JobQueue, filters: dict[str, str]) -> list[str]:
    """The sorted sets whose union is exactly the jobs matching ``filters`` (no workflow)."""
    keys = queue.keys
    status, service, customer = (filters.get(k) for k in ("status", "service", "customer_id"))
    statuses = [status] if status is not None else list(STATUSES)
    if customer is not None and status is None and service is None:
        return [keys.listing_customer(customer)]
    if service is not None:
        services = [service]
    else:
        members: Any = await queue.redis.smembers(keys.services)
        services = sorted(as_text(m) for m in members)
    if customer is not None:
        return [
            keys.listing_status_service_customer(st, sv, customer)
            for st in statuses
            for sv in services
        ]
    return [keys.listing_status_service(st, sv) for st in statuses for sv in services]


async def page_from_indexes(
    queue: JobQueue, keys: list[str], upper: str, limit: int
) -> tuple[list[str], int | None]:
    """The ``limit`` newest job ids below ``upper`` across ``keys``, and the cursor for the
    next page (None when no job is left)."""
    async with queue.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrevrangebyscore(key, upper, "-inf", start=0, num=limit + 1, withscores=True)
        pages = await pipe.execute()
    entries = heapq.merge(
        *([(-int(seq), as_text(member)) for member, seq in page] for page in pages)
    )
    chosen: list[tuple[int, str]] = []
    for negative_seq, job_id in entries:
        if len(chosen) == limit:
            return [job_id for _, job_id in chosen], -chosen[-1][0]
        chosen.append((negative_seq, job_id))
    return [job_id for _, job_id in chosen], None
