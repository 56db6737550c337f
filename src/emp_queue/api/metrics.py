"""Prometheus metrics of one app instance, in a registry of its own (no process globals).

Queue-wide figures (depth, live workers) are read from Redis at scrape time, so every replica
reports the same values; counters count what this replica did.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from emp_queue.core.queue import JobQueue


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_submitted = Counter(
            "emp_api_jobs_submitted",
            "Jobs submitted through this API replica.",
            ["service"],
            registry=self.registry,
        )
        self.queue_jobs = Gauge(
            "emp_queue_jobs",
            "Jobs in the queue per service and status.",
            ["service", "status"],
            registry=self.registry,
        )
        self.live_workers = Gauge(
            "emp_live_workers", "Registered workers that heartbeat in time.", registry=self.registry
        )

    async def render(self, queue: JobQueue) -> bytes:
        counts = await queue.stats()
        workers = await queue.live_workers()
        # No await below: a concurrent scrape cannot see a half-cleared gauge.
        self.queue_jobs.clear()
        for service, by_status in counts.items():
            for status, count in by_status.items():
                self.queue_jobs.labels(service=service, status=status).set(count)
        self.live_workers.set(len(workers))
        return generate_latest(self.registry)
