"""Simulated GPU workers driving the real queue: claim, load or download, run, complete.

Time is scaled: one simulated second is ``1 / scale`` real seconds, so the scripts' own
clock (leases, fair-share windows, affinity holds) runs at the same scaled pace. Each worker
holds models in VRAM and on disk, least recently used first out; a job whose model is not
in VRAM waits for a load (and a download first when it is not on disk either).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from bench.fleet_sim.policies import Policy
from bench.fleet_sim.trace import MachineSpec, Scenario, TraceJob
from emp_queue.core.demand import model_demand
from emp_queue.core.queue import JobQueue
from emp_queue.machine.placement import Action, Holding, PlacementDecision, plan_placement
from emp_queue.models import JobSpec, ServiceModels, WorkerCapabilities

SERVICE = "sim"
IDLE_POLL_S = 5.0  # simulated: an idle worker claims again at least this often
PLACEMENT_EVERY_S = 20.0  # simulated: how often an idle worker's agent reads the demand


class Clock:
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.scale

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(max(0.0, simulated_s) / self.scale)


@dataclass
class JobRecord:
    job: TraceJob
    submitted_s: float
    started_s: float | None = None
    worker: str | None = None


@dataclass
class Tally:
    loads: int = 0
    downloads: int = 0
    loading_s: float = 0.0  # GPU time spent loading and downloading
    preloads: int = 0
    records: dict[str, JobRecord] = field(default_factory=dict)
    completed: int = 0


def _bytes(gb: float) -> int:
    return round(gb * 1e9)


class Holdings:
    """A machine's models: in VRAM and on disk, each in least-recently-used order."""

    def __init__(self, spec: MachineSpec, scenario: Scenario) -> None:
        self.spec = spec
        self.scenario = scenario
        self.vram: OrderedDict[str, float] = OrderedDict()
        self.disk: OrderedDict[str, float] = OrderedDict(
            (name, scenario.model(name).size_gb) for name in spec.installed
        )

    def prepare(self, name: str) -> tuple[float, bool, bool]:
        """Make ``name`` ready in VRAM: (seconds it takes, loaded?, downloaded?)."""
        if name in self.vram:
            self.vram.move_to_end(name)
            return 0.0, False, False
        size = self.scenario.model(name).size_gb
        seconds, downloaded = 0.0, False
        if name not in self.disk:
            while self.disk and sum(self.disk.values()) + size > self.spec.disk_gb:
                self.disk.popitem(last=False)
            self.disk[name] = size
            seconds += size * self.scenario.download_s_per_gb
            downloaded = True
        self.disk.move_to_end(name)
        while self.vram and sum(self.vram.values()) + size > self.spec.vram_gb:
            self.vram.popitem(last=False)
        self.vram[name] = size
        return seconds + size * self.scenario.load_s_per_gb, True, downloaded

    def holding(self) -> Holding:
        """What the placement planner sees (sizes in bytes)."""
        return Holding(
            SERVICE,
            vram_bytes=_bytes(self.spec.vram_gb),
            disk_bytes=_bytes(self.spec.disk_gb),
            loaded=OrderedDict((name, _bytes(gb)) for name, gb in self.vram.items()),
            installed=OrderedDict((name, _bytes(gb)) for name, gb in self.disk.items()),
            fetchable={m.name: _bytes(m.size_gb) for m in self.scenario.models},
        )

    def apply(self, decisions: list[PlacementDecision]) -> float:
        """Carry out the planner's decisions; the simulated seconds they take."""
        seconds = 0.0
        for decision in decisions:
            size = self.scenario.model(decision.model).size_gb
            if decision.action is Action.DELETE:
                self.disk.pop(decision.model, None)
            elif decision.action is Action.DOWNLOAD:
                self.disk[decision.model] = size
                seconds += size * self.scenario.download_s_per_gb
            elif decision.action is Action.UNLOAD:
                self.vram.pop(decision.model, None)
            else:
                self.disk.move_to_end(decision.model)
                self.vram[decision.model] = size
                seconds += size * self.scenario.load_s_per_gb
        return seconds

    def models(self) -> ServiceModels:
        """The three levels; every model of the scenario has a source to fetch it from."""
        return ServiceModels(
            installed=sorted(self.disk),
            loaded=sorted(self.vram),
            fetchable=sorted(m.name for m in self.scenario.models if m.name not in self.disk),
            sizes={m.name: _bytes(m.size_gb) for m in self.scenario.models},
        )


class Fleet:
    """One policy's run: a submitter replaying the trace, one task per simulated machine."""

    def __init__(self, queue: JobQueue, scenario: Scenario, policy: Policy, scale: float) -> None:
        self.queue = queue
        self.scenario = scenario
        self.policy = policy
        self.clock = Clock(scale)
        self.tally = Tally()
        self.work = asyncio.Condition()
        self.done = asyncio.Event()

    async def run(self) -> Tally:
        holdings = [Holdings(spec, self.scenario) for spec in self.scenario.machines]
        for machine in holdings:
            await self._register(machine)
        self.clock = Clock(self.clock.scale)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._submit_trace())
            for machine in holdings:
                group.create_task(self._work(machine))
        return self.tally

    def capabilities(self, machine: Holdings) -> WorkerCapabilities:
        return WorkerCapabilities(
            services=[SERVICE],
            models={SERVICE: machine.models()} if self.policy.reports_models else {},
            pool=self.policy.pool_of(self.scenario.machines.index(machine.spec)),
        )

    async def _register(self, machine: Holdings) -> None:
        await self.queue.register_worker(machine.spec.name, self.capabilities(machine))

    async def _submit_trace(self) -> None:
        for job in self.scenario.jobs:
            await self.clock.sleep(job.arrival_s - self.clock.now())
            job_id = f"trace-{job.index:06d}"
            # Recorded first: a worker may claim the job before submit() returns.
            self.tally.records[job_id] = JobRecord(job, self.clock.now())
            spec = JobSpec(
                id=job_id,
                service_required=SERVICE,
                customer_id=job.customer,
                payload={"model": job.model, "run_s": job.run_s},
                requirements=self.policy.requirements(job),
            )
            await self.queue.submit(spec)
            async with self.work:
                self.work.notify_all()

    async def _idle(self) -> None:
        async with self.work:
            try:
                await asyncio.wait_for(self.work.wait(), IDLE_POLL_S / self.clock.scale)
            except TimeoutError:
                return

    async def _work(self, machine: Holdings) -> None:
        name = machine.spec.name
        last_placement = -PLACEMENT_EVERY_S
        while self.tally.completed < len(self.scenario.jobs):
            claimed = await self.queue.claim(name)
            if not claimed:
                if self.policy.placement and self.clock.now() - last_placement >= PLACEMENT_EVERY_S:
                    last_placement = self.clock.now()
                    await self._place(machine)
                else:
                    await self._idle()
                continue
            job = claimed[0].job
            record = self.tally.records[job.id]
            seconds, loaded, downloaded = machine.prepare(record.job.model)
            self.tally.loads += loaded
            self.tally.downloads += downloaded
            self.tally.loading_s += seconds
            if loaded and self.policy.reports_models:
                await self._register(machine)
            await self.clock.sleep(seconds)
            record.started_s, record.worker = self.clock.now(), name
            await self.clock.sleep(record.job.run_s)
            await self.queue.complete(name, job.id, claimed[0].attempt, None)
            self.tally.completed += 1
        async with self.work:
            self.work.notify_all()

    async def _place(self, machine: Holdings) -> None:
        """Predictive placement by an idle machine: the machine agent's planner
        (``emp_queue.machine.placement``) on the fleet's demand, its decisions carried out
        here (downloads and loads take their simulated time and count as such)."""
        decisions = plan_placement(await model_demand(self.queue), machine.holding())
        seconds = machine.apply(decisions)
        if not decisions:
            return
        self.tally.preloads += sum(1 for d in decisions if d.action is Action.LOAD)
        self.tally.downloads += sum(1 for d in decisions if d.action is Action.DOWNLOAD)
        self.tally.loading_s += seconds
        await self._register(machine)
        await self.clock.sleep(seconds)
