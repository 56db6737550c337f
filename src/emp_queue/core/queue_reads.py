"""The queue's reads that need no script: jobs by id, counts and totals the scripts keep,
customers' figures and usage, dead letters, the workers on record.

``QueueReads`` is a base class of :class:`~emp_queue.core.queue.JobQueue`, as
:class:`~emp_queue.core.worker_calls.WorkerCalls` is; it holds no state of its own and reads
plain commands and pipelines only (never a scan). The reads that explain and list
(``core/inspection.py``) stay on ``JobQueue``, which they take whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from emp_queue.core import customers
from emp_queue.core.codec import decode_job, requirements_of
from emp_queue.core.customers import CustomerFigures, CustomerView
from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text
from emp_queue.core.totals import FleetTotals
from emp_queue.core.usage import Granularity, UsageRow
from emp_queue.core.usage import usage as usage_of
from emp_queue.errors import JobNotFoundError
from emp_queue.models import Job


class QueueReads:
    """Reads of :class:`~emp_queue.core.queue.JobQueue` (a base class of it)."""

    redis: Redis
    keys: Keys
    fair_share_half_life_ms: int
    _requirements: dict[str, dict[str, Any]]

    async def get(self, job_id: str) -> Job:
        jobs = await self._get_many([job_id])
        if not jobs:
            raise JobNotFoundError(
                f"no job {job_id!r} in namespace {self.keys.namespace!r} "
                "(unknown id, or expired after the retention period)"
            )
        return jobs[0]

    async def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs that exist among ``job_ids``, in that order (missing ones left out)."""
        return await self._get_many(job_ids)

    async def class_requirements(self, class_id: str) -> dict[str, Any]:
        return await self._class_requirements(class_id)

    async def _get_many(self, job_ids: Sequence[str]) -> list[Job]:
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            records = await pipe.execute()
        jobs = []
        for job_id, record in zip(job_ids, records, strict=True):
            if record:
                class_id = as_text(record.get(b"class", record.get("class", b"")))
                jobs.append(decode_job(job_id, record, await self._class_requirements(class_id)))
        return jobs

    async def _class_requirements(self, class_id: str) -> dict[str, Any]:
        # Classes are content-addressed, so a class's requirements never change once read.
        if class_id not in self._requirements:
            raw = await self.redis.hget(self.keys.job_class(class_id), "desc")
            self._requirements[class_id] = requirements_of(raw) if raw else {}
        return self._requirements[class_id]

    async def stats(self) -> dict[str, dict[str, int]]:
        """Job counts per service and status, maintained by the scripts (never a scan)."""
        raw = await self.redis.hgetall(self.keys.stats)
        counts: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            service, status = as_text(field).split("|", 1)
            if int(value):
                counts.setdefault(service, {})[status] = int(value)
        return counts

    async def totals(self) -> FleetTotals:
        """Claims, completions, failures and time histograms of the whole fleet, counted by
        the scripts as they happen (:mod:`emp_queue.core.totals`)."""
        return FleetTotals.from_hash(await self.redis.hgetall(self.keys.totals))

    async def customer(self, customer_id: str) -> CustomerView:
        """A customer's policy (the default one when none was set) and its counts now."""
        return await customers.view(
            self.redis, self.keys, customer_id, self.fair_share_half_life_ms
        )

    async def customer_figures(self) -> CustomerFigures:
        """Every customer's running and waiting jobs now and usage totals since the start."""
        return await customers.figures(self.redis, self.keys)

    async def customers_with_policies(self) -> list[str]:
        return await customers.with_policies(self.redis, self.keys)

    async def usage(
        self,
        *,
        from_ms: int,
        to_ms: int,
        granularity: Granularity = Granularity.HOUR,
        customer_id: str | None = None,
        service: str | None = None,
    ) -> list[UsageRow]:
        """Attempts, wait, run and GPU time, output bytes per customer, service and pool by
        hour or day (see :mod:`emp_queue.core.usage`)."""
        return await usage_of(
            self.redis,
            self.keys,
            from_ms=from_ms,
            to_ms=to_ms,
            granularity=granularity,
            customer_id=customer_id,
            service=service,
        )

    async def dead_letters(self, offset: int = 0, limit: int = 100) -> list[Job]:
        """Dead-lettered jobs, oldest first."""
        ids: Any = await self.redis.zrange(self.keys.dead, offset, offset + limit - 1)
        return await self._get_many([as_text(i) for i in ids])

    async def served_services(self) -> set[str]:
        """Services that ever had a registered worker in this namespace."""
        members: Any = await self.redis.smembers(self.keys.served)
        return {as_text(m) for m in members}

    async def live_workers(self) -> list[str]:
        members: Any = await self.redis.zrange(self.keys.workers, 0, -1)
        return [as_text(w) for w in members]
