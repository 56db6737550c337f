"""Prometheus metrics of one app instance, in a registry of its own (no process globals).

Queue-wide figures (depth, live workers) are read from Redis at scrape time, so every replica
reports the same values. The claim/complete/fail counters and the wait and run time
histograms are fed by the queue's event stream, which every replica follows from its start:
they count the whole fleet's jobs since this replica started (scrape one replica, or take the
max across replicas — do not sum them). ``emp_api_jobs_submitted`` counts this replica only.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from redis.exceptions import RedisError

from emp_queue.core.events import Event
from emp_queue.core.queue import JobQueue

log = structlog.get_logger(__name__)
STOP_CHECK_MS = 250

# Seconds: from sub-second API calls to hour-long video renders.
TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


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
        self.jobs_claimed = Counter(
            "emp_jobs_claimed", "Jobs claimed by workers.", ["service"], registry=self.registry
        )
        self.jobs_completed = Counter(
            "emp_jobs_completed", "Jobs completed.", ["service"], registry=self.registry
        )
        self.jobs_failed = Counter(
            "emp_jobs_failed",
            "Job failures reported as final (failed, timeout, dead-lettered).",
            ["service", "failure_class"],
            registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "emp_job_wait_seconds",
            "Time from submit to claim of completed jobs.",
            ["service"],
            buckets=TIME_BUCKETS,
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "emp_job_run_seconds",
            "Time from claim to completion.",
            ["service"],
            buckets=TIME_BUCKETS,
            registry=self.registry,
        )

    def observe(self, event: Event) -> None:
        """Count one event of the queue's stream."""
        service = str(event.data.get("service", "unknown"))
        if event.type == "job_assigned":
            self.jobs_claimed.labels(service=service).inc()
        elif event.type == "complete_job":
            self.jobs_completed.labels(service=service).inc()
            if "wait_ms" in event.data:
                self.wait_seconds.labels(service=service).observe(event.data["wait_ms"] / 1000)
            if "duration_ms" in event.data:
                self.run_seconds.labels(service=service).observe(event.data["duration_ms"] / 1000)
        elif event.type == "job_failed":
            failure_class = str(event.data.get("failure_class", "unknown"))
            self.jobs_failed.labels(service=service, failure_class=failure_class).inc()

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


async def follow_events(queue: JobQueue, metrics: ApiMetrics, stop: asyncio.Event) -> None:
    """Feed ``metrics`` from the event stream, from now until ``stop`` is set.

    Reads block for a short time and the loop checks ``stop`` between them: a read is never
    cancelled half-way (that would cost the pooled connection). A Redis outage pauses the
    metrics; they resume from where they were when it ends.
    """
    cursor = await queue.events.latest_id()
    while not stop.is_set():
        try:
            events = await queue.events.read(cursor, block_ms=STOP_CHECK_MS)
        except RedisError as error:
            log.warning("metrics_event_read_failed", error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue
        for event in events:
            cursor = event.id
            metrics.observe(event)
