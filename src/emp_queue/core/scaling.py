"""The scaling signal: how many machines each pool should run for each service, and why.

Read from the broker only, so every API replica gives the same answer:

* queue depth per service (``stats``: pending, unworkable, assigned + in progress);
* arrival and completion rates over the last ``window_s`` (``job_submitted`` and
  ``complete_job`` entries of the event stream, whose ids are their times);
* measured per-slot service time (the fleet's run-time histogram: sum / count);
* machines per pool: online and ready, or still booting, from the machine records, and how
  many worker slots each has for the service (its registered workers, or for a booting machine
  its ``WORKERS`` spec);
* model demand: jobs that wait as *unworkable* need a capability no live worker offers (a model
  or GPU none has), so at least one machine that has it is wanted.

For a service with per-slot service time ``T``, ``k`` slots per machine, arrivals ``λ``/s and
``W`` jobs waiting, one machine completes ``μ = k / T`` jobs/s and the service wants
``ceil(λ / μ + W / (μ · drain_s))`` machines: enough to keep up with what arrives, plus enough
to drain the backlog within ``drain_s``. Machines that are booting count as capacity already
on its way. A service with no work and no arrivals wants 0 (scale to zero).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

from emp_queue.core.inspection import WorkerInfo
from emp_queue.core.matching import JobClass
from emp_queue.core.queue import JobQueue
from emp_queue.core.replies import as_text
from emp_queue.machine_models import MachinePhase, MachineRecord

NO_POOL = "default"
"""The pool of machines whose workers name none (``EMP_WORKER_POOL`` unset)."""
ASSUMED_RUN_S = 30.0
"""Per-slot service time assumed before any job of the service has completed."""
EVENTS_READ_MAX = 50_000
"""Stream entries read at most per estimate; past it the rates are taken over the span read."""


@dataclass(frozen=True)
class ScalingPolicy:
    window_s: float = 60.0
    drain_s: float = 300.0
    max_machines: int | None = None


@dataclass
class ServiceLoad:
    service: str
    waiting: int = 0
    unworkable: int = 0
    running: int = 0
    arrivals_per_s: float = 0.0
    completions_per_s: float = 0.0
    mean_run_s: float | None = None
    unworkable_needs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PoolCapacity:
    ready: int = 0
    booting: int = 0
    slots: int = 0
    """Worker slots of the ready machines for the service (a machine's workers of it)."""


@dataclass(frozen=True)
class ScalingDecision:
    pool: str
    service: str
    machines_ready: int
    machines_booting: int
    machines_wanted: int
    inputs: dict[str, Any]
    reasoning: list[str]

    @property
    def change(self) -> int:
        """Machines to add (positive) or that could go (negative), booting ones counted."""
        return self.machines_wanted - self.machines_ready - self.machines_booting


def machine_pool(machine: MachineRecord, workers: list[WorkerInfo]) -> str:
    """The pool most of the machine's workers name; else the record's; else ``default``."""
    named = Counter(w.capabilities.pool for w in workers if w.capabilities.pool)
    if named:
        return sorted(named.items(), key=lambda item: (-item[1], item[0]))[0][0]
    return machine.pool or NO_POOL


def capacities(
    machines: list[MachineRecord], workers: list[WorkerInfo]
) -> dict[tuple[str, str], PoolCapacity]:
    """(pool, service) → machines ready and booting and their slots."""
    by_machine: dict[str, list[WorkerInfo]] = defaultdict(list)
    for worker in workers:
        by_machine[worker.machine_id or ""].append(worker)
    result: dict[tuple[str, str], PoolCapacity] = defaultdict(PoolCapacity)
    for machine in machines:
        if not machine.online or machine.phase in (MachinePhase.STOPPED, MachinePhase.FAILED):
            continue
        own = by_machine.get(machine.machine_id, [])
        pool = machine_pool(machine, own)
        if machine.phase == MachinePhase.STARTING or not own:
            for service in machine.worker_types:
                result[(pool, service)].booting += 1
            continue
        if machine.phase != MachinePhase.READY:
            continue  # draining: capacity that is leaving
        slots = Counter(service for worker in own for service in worker.capabilities.services)
        for service, count in slots.items():
            capacity = result[(pool, service)]
            capacity.ready += 1
            capacity.slots += count
    return result


def decide(
    loads: dict[str, ServiceLoad],
    capacity: dict[tuple[str, str], PoolCapacity],
    policy: ScalingPolicy,
) -> list[ScalingDecision]:
    """One decision per (pool, service) that has machines or work."""
    decisions = []
    services = set(loads) | {service for _, service in capacity}
    for service in sorted(services):
        load = loads.get(service, ServiceLoad(service))
        pools = sorted(pool for pool, s in capacity if s == service) or [NO_POOL]
        total_ready = sum(capacity.get((p, service), PoolCapacity()).ready for p in pools)
        for pool in pools:
            own = capacity.get((pool, service), PoolCapacity())
            # Pools serving the same service share its demand by their share of ready machines.
            share = own.ready / total_ready if total_ready else 1 / len(pools)
            decisions.append(_decide_one(pool, load, own, share, policy))
    return decisions


def _decide_one(
    pool: str, load: ServiceLoad, own: PoolCapacity, share: float, policy: ScalingPolicy
) -> ScalingDecision:
    reasons: list[str] = []
    slots = own.slots / own.ready if own.ready else 1.0
    run_s = load.mean_run_s
    if run_s is None or run_s <= 0:
        run_s = ASSUMED_RUN_S
        reasons.append(f"no {load.service} job has completed yet: {ASSUMED_RUN_S:g} s per job "
                       "assumed")  # fmt: skip
    per_machine = slots / run_s
    arrivals = load.arrivals_per_s * share
    waiting = (load.waiting + load.unworkable) * share
    keep_up = arrivals / per_machine
    drain = waiting / (per_machine * policy.drain_s)
    reasons.append(
        f"one machine completes {per_machine:.3g} jobs/s ({slots:g} slot(s), "
        f"{run_s:.3g} s per job measured)"
        if load.mean_run_s
        else f"one machine completes {per_machine:.3g} jobs/s ({slots:g} slot(s))"
    )
    reasons.append(f"{arrivals:.3g} jobs/s arrive over the last {policy.window_s:g} s: "
                   f"{keep_up:.3g} machines keep up")  # fmt: skip
    reasons.append(f"{waiting:g} jobs waiting: {drain:.3g} machines drain them within "
                   f"{policy.drain_s:g} s")  # fmt: skip
    wanted = math.ceil(keep_up + drain - 1e-9)
    if load.running and wanted == 0 and own.ready:
        wanted = 1
        reasons.append(f"{load.running} job(s) running: keep one machine")
    if load.unworkable:
        wanted = max(wanted, 1)
        needs = "; ".join(json.dumps(need, sort_keys=True) for need in load.unworkable_needs[:5])
        reasons.append(
            f"{load.unworkable} job(s) need a capability no live worker has"
            + (f" ({needs})" if needs else "")
            + ": at least one machine that has it"
        )
    if policy.max_machines is not None and wanted > policy.max_machines:
        reasons.append(f"capped at EMP_API_SCALING_MAX_MACHINES={policy.max_machines}")
        wanted = policy.max_machines
    if own.booting:
        reasons.append(f"{own.booting} machine(s) booting count as capacity on its way")
    reasons.append(f"wanted {wanted}: ready {own.ready}, booting {own.booting}, "
                   f"change {wanted - own.ready - own.booting:+d}")  # fmt: skip
    return ScalingDecision(
        pool=pool,
        service=load.service,
        machines_ready=own.ready,
        machines_booting=own.booting,
        machines_wanted=wanted,
        inputs={
            "waiting": load.waiting,
            "unworkable": load.unworkable,
            "running": load.running,
            "arrivals_per_s": round(load.arrivals_per_s, 4),
            "completions_per_s": round(load.completions_per_s, 4),
            "mean_run_s": None if load.mean_run_s is None else round(load.mean_run_s, 3),
            "slots_per_machine": slots,
            "machine_jobs_per_s": round(per_machine, 4),
            "share_of_service": round(share, 4),
        },
        reasoning=reasons,
    )


async def service_loads(queue: JobQueue, window_s: float) -> dict[str, ServiceLoad]:
    """Depths, rates, service times and unworkable needs per service, from the broker."""
    stats = await queue.stats()
    totals = await queue.totals()
    loads: dict[str, ServiceLoad] = {}
    for service, counts in stats.items():
        load = loads[service] = ServiceLoad(service)
        load.waiting = counts.get("pending", 0)
        load.unworkable = counts.get("unworkable", 0)
        load.running = counts.get("assigned", 0) + counts.get("in_progress", 0)
        run = totals.run.get(service)
        if run is not None and run.count:
            load.mean_run_s = run.sum_s / run.count
    arrivals, completions, span_s = await _rates(queue, window_s)
    for service, count in arrivals.items():
        loads.setdefault(service, ServiceLoad(service)).arrivals_per_s = count / span_s
    for service, count in completions.items():
        loads.setdefault(service, ServiceLoad(service)).completions_per_s = count / span_s
    for service, needs in (await _unworkable_needs(queue)).items():
        loads.setdefault(service, ServiceLoad(service)).unworkable_needs = needs
    return loads


async def _rates(queue: JobQueue, window_s: float) -> tuple[Counter[str], Counter[str], float]:
    now_ms = int(time.time() * 1000)
    since_ms = now_ms - int(window_s * 1000)
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        await queue.redis.xrevrange(
            queue.keys.events, max="+", min=f"{since_ms}-0", count=EVENTS_READ_MAX
        ),
    )
    arrivals: Counter[str] = Counter()
    completions: Counter[str] = Counter()
    for _entry_id, fields in entries:
        kind = as_text(fields.get(b"type", b""))
        if kind not in ("job_submitted", "complete_job"):
            continue
        service = json.loads(fields.get(b"data", b"{}")).get("service")
        if service:
            (arrivals if kind == "job_submitted" else completions)[service] += 1
    span_s = window_s
    if len(entries) == EVENTS_READ_MAX:  # more than we read: rate over the span we read
        oldest_ms = int(as_text(entries[-1][0]).partition("-")[0])
        span_s = max(0.001, (now_ms - oldest_ms) / 1000)
    return arrivals, completions, span_s


async def _unworkable_needs(queue: JobQueue) -> dict[str, list[dict[str, Any]]]:
    """Requirements of the classes no live worker can run, per service (a few per service)."""
    classes = [as_text(c) for c in await queue.redis.smembers(queue.keys.unworkable_classes)]
    if not classes:
        return {}
    async with queue.redis.pipeline(transaction=False) as pipe:
        for class_id in classes[:200]:
            pipe.hget(queue.keys.job_class(class_id), "desc")
        descs = await pipe.execute()
    needs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for desc in descs:
        if not desc:
            continue
        job_class = JobClass.from_descriptor(desc)
        requirements = dict(job_class.requirements)
        if requirements and requirements not in needs[job_class.service]:
            needs[job_class.service].append(requirements)
    return dict(needs)


async def scaling_plan(
    queue: JobQueue, machines: list[MachineRecord], policy: ScalingPolicy
) -> list[ScalingDecision]:
    loads = await service_loads(queue, policy.window_s)
    workers = await queue.workers()
    return decide(loads, capacities(machines, workers), policy)
