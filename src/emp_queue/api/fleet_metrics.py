"""Fleet figures read from Redis at scrape time: what waits, who works, machines' GPUs,
webhook deliveries. Every replica reports the same values (scrape one, or take the max).

Pool is a worker's or machine's ``pool`` (``""`` when none); queue depth is per service,
since jobs wait for a service, not a pool.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from emp_queue.core.inspection import QueueDepth, WorkerInfo
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.machine_models import MachineRecord
from emp_queue.webhooks.intake import GROUP
from emp_queue.webhooks.store import WebhookStore

GIB = 1024**3


@dataclass
class FleetSnapshot:
    depths: list[QueueDepth] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)
    machines: list[MachineRecord] = field(default_factory=list)
    webhook_totals: dict[str, int] = field(default_factory=dict)
    webhooks_due: int = 0
    webhook_group_lag: int | None = None
    newest_event_age_s: float | None = None


async def webhook_group_lag(redis: Redis, stream: str) -> int | None:
    """Events the webhook dispatchers have not read yet (None before the group exists)."""
    groups: Any = await redis.xinfo_groups(stream)
    for group in groups:
        name = group.get("name", group.get(b"name"))
        if name in (GROUP, GROUP.encode()):
            lag = group.get("lag", group.get(b"lag"))
            return int(lag) if lag is not None else None
    return None


async def fleet_snapshot(
    queue: JobQueue, machines: MachineRegistry, webhooks: WebhookStore
) -> FleetSnapshot:
    stream = queue.keys.events
    lag = None
    if await queue.redis.exists(stream):
        lag = await webhook_group_lag(queue.redis, stream)
    latest = await queue.events.latest_id()
    newest_ms = int(latest.split("-")[0])
    return FleetSnapshot(
        depths=await queue.queue_depths(),
        workers=await queue.workers(),
        machines=await machines.all(),
        webhook_totals=await webhooks.totals(),
        webhooks_due=await webhooks.due_count(),
        webhook_group_lag=lag,
        newest_event_age_s=(time.time() * 1000 - newest_ms) / 1000 if newest_ms else None,
    )


class FleetCollector(Collector):
    """Exposes the snapshot taken for the scrape in progress."""

    def __init__(self) -> None:
        self.snapshot = FleetSnapshot()

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._workers()
        yield from self._machines()
        yield from self._webhooks()

    def _queues(self) -> Iterator[Metric]:
        oldest = GaugeMetricFamily(
            "emp_queue_oldest_wait_seconds",
            "How long the front job of each service has waited.",
            labels=["service"],
        )
        for depth in self.snapshot.depths:
            if depth.oldest_wait_ms is not None:
                oldest.add_metric([depth.service], depth.oldest_wait_ms / 1000)
        yield oldest

    def _workers(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "emp_workers", "Live workers by pool and state.", labels=["pool", "state"]
        )
        counts = Counter(
            (worker.capabilities.pool or "", worker.status) for worker in self.snapshot.workers
        )
        for (pool, state), count in sorted(counts.items()):
            by_state.add_metric([pool, state], count)
        yield by_state

    def _machines(self) -> Iterator[Metric]:
        labels = ["machine", "pool", "gpu"]
        total = GaugeMetricFamily("emp_machine_gpu_memory_bytes", "GPU memory.", labels=labels)
        used = GaugeMetricFamily(
            "emp_machine_gpu_memory_used_bytes",
            "GPU memory in use at the machine's last status (NVML; absent for mock GPUs).",
            labels=labels,
        )
        busy = GaugeMetricFamily(
            "emp_machine_gpu_utilization_percent",
            "GPU utilisation at the machine's last status: the share of NVML's last sample "
            "period in which a kernel ran (NVML; absent for mock GPUs).",
            labels=labels,
        )
        services = GaugeMetricFamily(
            "emp_machine_services",
            "Services of online machines by state (running, restarting, failed...).",
            labels=["machine", "pool", "state"],
        )
        restarts = CounterMetricFamily(
            "emp_machine_service_restarts", "Restarts per service.", labels=["machine", "service"]
        )
        for machine in self.snapshot.machines:
            pool = machine.pool or ""
            for gpu in machine.hardware.gpus:
                key = [machine.machine_id, pool, str(gpu.index)]
                total.add_metric(key, gpu.memory_gb * GIB)
                if gpu.memory_used_gb is not None:
                    used.add_metric(key, gpu.memory_used_gb * GIB)
                if gpu.utilization_percent is not None:
                    busy.add_metric(key, gpu.utilization_percent)
            if not machine.online:
                continue
            states = Counter(service.status.value for service in machine.services)
            for state, count in sorted(states.items()):
                services.add_metric([machine.machine_id, pool, state], count)
            for service in machine.services:
                restarts.add_metric([machine.machine_id, service.name], service.restarts)
        yield from (total, used, busy, services, restarts)

    def _webhooks(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        deliveries = CounterMetricFamily(
            "emp_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, given_up).",
            labels=["outcome"],
        )
        for outcome, count in sorted(snapshot.webhook_totals.items()):
            deliveries.add_metric([outcome], count)
        yield deliveries
        yield GaugeMetricFamily(
            "emp_webhook_deliveries_pending",
            "Deliveries not yet delivered or given up (due now or waiting for a retry).",
            value=snapshot.webhooks_due,
        )
        lag = GaugeMetricFamily(
            "emp_webhook_event_lag",
            "Events in the stream the webhook dispatchers have not read yet.",
        )
        if snapshot.webhook_group_lag is not None:
            lag.add_metric([], snapshot.webhook_group_lag)
        quiet = GaugeMetricFamily(
            "emp_event_stream_newest_age_seconds",
            "Age of the newest event in the stream (how long the fleet has been quiet).",
        )
        if snapshot.newest_event_age_s is not None:
            quiet.add_metric([], snapshot.newest_event_age_s)
        yield from (lag, quiet)
