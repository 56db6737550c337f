"""The synthetic workload: models, GPU machines and a job trace, all from one seed.

Models have Zipf popularity; customers arrive as Poisson processes whose rate jumps during
bursts; each job is fast, standard or heavy. Times are simulated seconds.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    name: str
    size_gb: float
    popularity: float  # share of jobs naming it (Zipf)


@dataclass(frozen=True)
class TraceJob:
    index: int
    arrival_s: float
    customer: str
    model: str
    kind: str  # fast | standard | heavy
    run_s: float


@dataclass(frozen=True)
class MachineSpec:
    name: str
    vram_gb: float
    disk_gb: float
    installed: tuple[str, ...]  # models on disk at boot


@dataclass(frozen=True)
class Scenario:
    models: tuple[Model, ...]
    machines: tuple[MachineSpec, ...]
    jobs: tuple[TraceJob, ...]
    load_s_per_gb: float  # disk -> VRAM
    download_s_per_gb: float  # model source -> disk

    def model(self, name: str) -> Model:
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, Model]:
        return {model.name: model for model in self.models}


@dataclass(frozen=True)
class TraceShape:
    seed: int = 16
    models: int = 36
    zipf_s: float = 1.1
    machines: int = 12
    vram_gb: float = 24.0
    disk_gb: float = 80.0
    customers: tuple[str, ...] = ("acme", "globex", "initech")
    arrivals_s: float = 3_600.0
    jobs_per_s: float = 0.27  # all customers together, outside bursts
    burst_factor: float = 4.0  # rate multiplier during a customer's burst
    burst_every_s: float = 600.0
    burst_length_s: float = 90.0
    load_s_per_gb: float = 1.0
    download_s_per_gb: float = 6.0


KINDS = (("fast", 0.6, 4.0), ("standard", 0.3, 25.0), ("heavy", 0.1, 120.0))
SIZES_GB = (2.0, 2.0, 4.0, 4.0, 6.5, 6.5, 6.5, 12.0)


def _models(shape: TraceShape, rng: random.Random) -> tuple[Model, ...]:
    weights = [1 / (rank**shape.zipf_s) for rank in range(1, shape.models + 1)]
    total = sum(weights)
    return tuple(
        Model(f"model-{rank:02d}.safetensors", rng.choice(SIZES_GB), weight / total)
        for rank, weight in enumerate(weights, start=1)
    )


def _machines(
    shape: TraceShape, models: tuple[Model, ...], rng: random.Random
) -> tuple[MachineSpec, ...]:
    """Each machine boots with a random subset of models on disk (what its image baked in)."""
    machines = []
    for number in range(shape.machines):
        installed: list[str] = []
        used = 0.0
        for model in rng.sample(models, len(models)):
            if used + model.size_gb <= shape.disk_gb * 0.6:
                installed.append(model.name)
                used += model.size_gb
        machines.append(
            MachineSpec(f"gpu-{number:02d}", shape.vram_gb, shape.disk_gb, tuple(installed))
        )
    return tuple(machines)


def _arrivals(shape: TraceShape, customer: int, rng: random.Random) -> list[float]:
    """A Poisson process at the customer's base rate, times burst_factor during its bursts
    (each customer's bursts are offset so that they do not all coincide)."""
    base = shape.jobs_per_s / len(shape.customers)
    offset = customer * shape.burst_every_s / len(shape.customers)
    peak = base * shape.burst_factor
    times, now = [], 0.0
    while True:
        now += rng.expovariate(peak)  # thinning: propose at the peak rate, keep by the rate
        if now >= shape.arrivals_s:
            return times
        in_burst = (now - offset) % shape.burst_every_s < shape.burst_length_s and now >= offset
        if rng.random() < (peak if in_burst else base) / peak:
            times.append(now)


def build(shape: TraceShape) -> Scenario:
    rng = random.Random(shape.seed)
    models = _models(shape, rng)
    machines = _machines(shape, models, rng)
    arrivals = [
        (time, customer)
        for number, customer in enumerate(shape.customers)
        for time in _arrivals(shape, number, rng)
    ]
    arrivals.sort()
    jobs = []
    for index, (arrival, customer) in enumerate(arrivals):
        model = rng.choices(models, weights=[m.popularity for m in models])[0]
        kind, _, mean_s = rng.choices(KINDS, weights=[k[1] for k in KINDS])[0]
        run_s = mean_s * rng.lognormvariate(0, 0.3)
        jobs.append(TraceJob(index, arrival, customer, model.name, kind, run_s))
    return Scenario(models, machines, tuple(jobs), shape.load_s_per_gb, shape.download_s_per_gb)
