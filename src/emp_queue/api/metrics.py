"""Prometheus metrics of one app instance, in a registry of its own (no process globals).

Queue-wide figures are read from Redis at scrape time, so every replica reports the same
values: depth per service and status, live workers, and the fleet's claim/complete/fail
counters and wait/run time histograms, which the queue's scripts count as the jobs move
(:mod:`emp_queue.core.totals`). Scrape one replica, or take the max across replicas; do not
sum them. ``emp_api_jobs_submitted`` is the exception: it counts this replica's submissions.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from emp_queue.api.fleet_metrics import FleetCollector
from emp_queue.api.request_metrics import RequestMetrics
from emp_queue.core.customers import CustomerFigures
from emp_queue.core.queue import JobQueue
from emp_queue.core.scaling import ScalingDecision
from emp_queue.core.totals import FleetTotals, TimeHistogram


class FleetTotalsCollector(Collector):
    """Exposes the totals read for the scrape in progress."""

    def __init__(self) -> None:
        self.totals = FleetTotals()

    def collect(self) -> Iterator[Metric]:
        totals = self.totals
        claimed = CounterMetricFamily(
            "emp_jobs_claimed", "Jobs claimed by workers.", labels=["service"]
        )
        for service, count in sorted(totals.claimed.items()):
            claimed.add_metric([service], count)
        completed = CounterMetricFamily("emp_jobs_completed", "Jobs completed.", labels=["service"])
        for service, count in sorted(totals.completed.items()):
            completed.add_metric([service], count)
        failed = CounterMetricFamily(
            "emp_jobs_failed",
            "Job failures reported as final (failed, timeout, dead-lettered).",
            labels=["service", "failure_class"],
        )
        for (service, failure_class), count in sorted(totals.failed.items()):
            failed.add_metric([service, failure_class], count)
        yield from (claimed, completed, failed)
        yield histogram("emp_job_wait_seconds", "Time from submit to claim of completed jobs.",
                        totals.wait)  # fmt: skip
        yield histogram("emp_job_run_seconds", "Time from claim to completion.", totals.run)


def histogram(name: str, documentation: str, by_service: dict[str, TimeHistogram]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["service"])
    for service, times in sorted(by_service.items()):
        family.add_metric([service], times.cumulative(), times.sum_s)
    return family


class ScalingCollector(Collector):
    """``emp_scaling_machines_{wanted,ready,booting}`` per pool and service (``/api/scaling``)."""

    def __init__(self) -> None:
        self.decisions: list[ScalingDecision] = []

    def collect(self) -> Iterator[Metric]:
        for name, documentation in (
            ("wanted", "Machines the pool should run for the service now (GET /api/scaling)."),
            ("ready", "Online, ready machines of the pool serving the service."),
            ("booting", "Machines of the pool started for the service but not ready yet."),
        ):
            family = GaugeMetricFamily(
                f"emp_scaling_machines_{name}", documentation, labels=["pool", "service"]
            )
            for decision in self.decisions:
                family.add_metric(
                    [decision.pool, decision.service], getattr(decision, f"machines_{name}")
                )
            yield family


class CustomerCollector(Collector):
    """Per customer (``customer=""``: jobs without one): running and waiting jobs now, and
    attempts, completions, run and GPU seconds since the start. Off with
    ``EMP_API_METRICS_PER_CUSTOMER=false`` where customers are too many for labels."""

    def __init__(self) -> None:
        self.figures: CustomerFigures | None = None

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        if figures is None:
            return
        for name, documentation, values in (
            ("emp_customer_jobs_running", "Jobs of the customer running now.", figures.running),
            ("emp_customer_jobs_waiting", "Jobs of the customer waiting now.", figures.waiting),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=["customer"])
            for customer, count in sorted(values.items()):
                gauge.add_metric([customer], count)
            yield gauge
        for name, documentation, measure, scale in (
            ("emp_customer_attempts", "Attempts that ended (completed or failed).", "jobs", 1),
            ("emp_customer_completed", "Jobs completed.", "completed", 1),
            ("emp_customer_run_seconds", "Run time of ended attempts.", "run_ms", 1000),
            ("emp_customer_gpu_seconds", "Run time times the worker's GPUs.", "gpu_ms", 1000),
        ):
            counter = CounterMetricFamily(name, documentation, labels=["customer"])
            for customer, totals in sorted(figures.totals.items()):
                counter.add_metric([customer], totals.get(measure, 0) / scale)
            yield counter


class ApiMetrics:
    def __init__(self, *, per_customer: bool = True) -> None:
        self.per_customer = per_customer
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
        self.fleet = FleetTotalsCollector()
        self.registry.register(self.fleet)
        self.scaling = ScalingCollector()
        self.registry.register(self.scaling)
        self.customers = CustomerCollector()
        self.registry.register(self.customers)
        self.observed = FleetCollector()
        self.registry.register(self.observed)
        self.http = RequestMetrics(self.registry)

    async def render(self, queue: JobQueue) -> bytes:
        counts = await queue.stats()
        workers = await queue.live_workers()
        totals = await queue.totals()
        customer_figures = await queue.customer_figures() if self.per_customer else None
        # No await below: a concurrent scrape cannot see a half-cleared gauge.
        self.queue_jobs.clear()
        for service, by_status in counts.items():
            for status, count in by_status.items():
                self.queue_jobs.labels(service=service, status=status).set(count)
        self.live_workers.set(len(workers))
        self.fleet.totals = totals
        self.customers.figures = customer_figures
        return generate_latest(self.registry)
