"""Fleet scale: what many workers cost Redis, whom new work wakes, and how fast a fleet drains.

    python -m bench.fleet_scale [--workers 100 1000 5000] [--seconds 20] [--processes 1]
        [--monitors 200] [--phases idle herd-other herd-same herd-scheduled busy fanout]
        [--write-docs]

Simulated workers, many in one process, call the real scripts through ``JobQueue`` with the
``emp worker`` defaults (heartbeat every 5 s, sweep every 15 s, a safety claim after 30 s
idle) and wait for work as ``worker/runtime.py`` does: a claim that finds nothing lists the
worker as idle, and it claims again when the broker wakes it on its own channel
``worker:<id>:wake`` (decision 0048) — or takes the claim the waking run made for it, which
the notice carries (decision 0073) — or when the claim said a scheduled job is due (the
watcher of decision 0072). The wake channels of many workers share a few
subscriber connections (``CHANNELS_PER_CONNECTION``), which costs Redis the same per notice as
one connection per worker. A private Valkey (the embedded binary) serves the run, so its
counters see only this benchmark. For each fleet size N:

* **idle** — N idle workers of one service for ``--seconds``: Redis CPU (share of one core,
  ``INFO cpu``) and commands/s (``INFO stats``).
* **herd-other** — N idle workers of another service, while one worker of ``sim`` runs what a
  producer submits at 100 jobs/s: submit → completion p50/p99, and the claims of the other
  service's workers that returned nothing, per submitted job (their safety claims included).
* **herd-same** — the same producer with N idle workers of ``sim`` itself: every claim that
  returned nothing, per submitted job (each worker lists itself as idle again with one such
  claim after its job, so about 1 per job is the floor), and submit → completion.
* **herd-scheduled** — as herd-same, but each job is submitted with ``delay_s`` 1 s (a
  ``run_at``; a retry's backoff waits in the same set): empty claims per job, and how late
  each job completes after its due time, p50/p99.
* **busy** — N workers of ``sim`` drain ``--jobs-per-worker`` (20) x N zero-length jobs, each
  worker one at a time (a GPU worker's concurrency of 1), sending each result with the claim
  of its next job in one call (``complete_and_claim``, as the runtime does): jobs/s, claim
  (or complete-and-claim) p50/p99. ``--processes P``
  spreads the workers over P processes (the client side, not Redis, limits one process).
* **fanout** (with the first fleet size only) — ``--monitors`` monitor WebSockets, each with
  its own admin key, on an ``emp api`` process while the producer runs ``--fanout-rate`` jobs/s
  (20) through a worker: each event's lag from its ``ts`` (Redis time at XADD) to
  its arrival at each monitor, p50/p99/max, and the share of events every monitor received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from bench.fleet_fanout import measure_fanout
from bench.harness import percentile
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.core.worker_calls import ClaimOutcome
from emp_queue.models import JobSpec, WorkerCapabilities

RESULTS = Path(__file__).parent / "results" / "fleet_scale.json"
HEARTBEAT_S = 5.0
SWEEP_S = 15.0
IDLE_POLL_S = 30.0
HERD_RATE = 100.0
CHANNELS_PER_CONNECTION = 250
PHASES = ("idle", "herd-other", "herd-same", "herd-scheduled", "busy", "fanout")
SCHEDULED_DELAY_S = 1.0


@dataclass
class FleetFigures:
    workers: int
    idle_redis_cpu_pct: float | None = None
    idle_commands_per_s: float | None = None
    other_useless_per_job: float | None = None
    other_p50_ms: float | None = None
    other_p99_ms: float | None = None
    same_empty_per_job: float | None = None
    same_p50_ms: float | None = None
    same_p99_ms: float | None = None
    scheduled_empty_per_job: float | None = None
    scheduled_late_p50_ms: float | None = None
    scheduled_late_p99_ms: float | None = None
    herd_redis_cpu_pct: float | None = None
    busy_jobs_per_s: float | None = None
    busy_claim_p50_ms: float | None = None
    busy_claim_p99_ms: float | None = None
    busy_redis_cpu_pct: float | None = None
    fanout_monitors: int | None = None
    fanout_lag_p50_ms: float | None = None
    fanout_lag_p99_ms: float | None = None
    fanout_lag_max_ms: float | None = None
    fanout_delivered_pct: float | None = None
    fanout_events_per_s: float | None = None
    notes: list[str] = field(default_factory=list)


async def _redis_counters(redis: Redis) -> tuple[float, int]:
    cpu = await redis.info("cpu")
    stats = await redis.info("stats")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), int(
        stats["total_commands_processed"]
    )


class WakeHub:
    """Reads the wake channels of many simulated workers over a few connections."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.workers: dict[bytes, SimWorker] = {}
        self.pubsubs: list[PubSub] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def add(self, channels: dict[str, SimWorker]) -> None:
        names = list(channels)
        for start in range(0, len(names), CHANNELS_PER_CONNECTION):
            chunk = names[start : start + CHANNELS_PER_CONNECTION]
            pubsub = self.redis.pubsub()
            await pubsub.subscribe(*chunk)
            self.workers.update({name.encode(): channels[name] for name in chunk})
            self.pubsubs.append(pubsub)
            self.tasks.append(asyncio.create_task(self._read(pubsub)))

    async def _read(self, pubsub: PubSub) -> None:
        while not self.closed:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                await self.workers[message["channel"]].notice(message["data"])

    async def close(self) -> None:
        self.closed = True
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=3)
            for task in pending:
                task.cancel()
        for pubsub in self.pubsubs:
            await pubsub.aclose()


class SimWorker:
    """One simulated worker of concurrency 1: the real scripts, the runtime's waiting."""

    def __init__(
        self, queue: JobQueue, worker_id: str, service: str, stopping: asyncio.Event
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.service = service
        self.stopping = stopping
        self.woken = asyncio.Event()
        self.errors = 0  # Redis calls that failed (a pool starved by an overloaded process)
        self.claims = 0
        self.empty = 0
        self.claim_ms: list[float] = []
        self.completed: dict[str, float] = {}
        self.due_s: float | None = None  # a scheduled job is due then: this worker watches it
        self.handed: ClaimOutcome | None = None  # claimed for it by the run that woke it

    async def register(self) -> None:
        # As the runtime does: jobs come in its wake notices (decision 0073).
        await self.queue.register_worker(
            self.worker_id, WorkerCapabilities(services=[self.service]), handoff_capacity=1
        )

    async def notice(self, data: bytes) -> None:
        """A wake notice: "claim now", or the claim a run made for this worker."""
        handed = await self.queue.handed_over(self.worker_id, data)
        if handed is not None:
            self.handed = handed[1]
        self.woken.set()

    async def housekeeping(self) -> None:
        # Staggered like a fleet started over time.
        # The loops end on the fleet's flag, not only by cancellation: redis-py can swallow a
        # cancellation that lands inside a command (decision 0007).
        await self._pause(random.uniform(0, HEARTBEAT_S))
        next_sweep = time.monotonic() + random.uniform(0, SWEEP_S)
        while not self.stopping.is_set():
            try:
                await self.queue.heartbeat(self.worker_id, [], "idle")
                if time.monotonic() >= next_sweep:
                    await self.queue.sweep_unless_recent(SWEEP_S / 2)
                    next_sweep += SWEEP_S
            except RedisError:
                self.errors += 1  # as the runtime does: count it, go on
            await self._pause(HEARTBEAT_S)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    async def serve(self) -> None:
        """Claim; after a job claim again; when a claim finds nothing (which lists the worker
        as idle), wait for a wake-up or the safety poll."""
        # The first safety poll comes at a random point of its period, as in a fleet whose
        # workers started at different times (else they would all poll at once).
        poll_s = random.uniform(0, IDLE_POLL_S)
        while not self.stopping.is_set():
            self.woken.clear()
            handed, self.handed = self.handed, None
            try:
                await self.claim_and_complete(handed)  # ends with a claim that found nothing
            except RedisError:
                self.errors += 1
                await self._pause(1.0)
                continue
            wait_s = poll_s if self.due_s is None else min(poll_s, self.due_s + 0.002)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self.woken.wait()
            poll_s = IDLE_POLL_S

    async def claim_and_complete(self, handed: ClaimOutcome | None = None) -> int:
        """Claim one job (or take the one handed over); run it (zero length) and send its
        result with the claim of the next (``complete_and_claim``, as the runtime does when its
        slot is free again) until a claim finds nothing. A hand-over counts as a claim (an
        empty one when it brought nothing), without a round trip of this worker's."""
        began = time.perf_counter()
        first = handed or await self.queue.claim_until_due(self.worker_id, count=1)
        claimed, self.due_s = first.jobs, first.due_in_s
        done = 0
        while True:
            if handed is None:
                self.claim_ms.append((time.perf_counter() - began) * 1000)
            handed = None
            self.claims += 1
            if not claimed:
                self.empty += 1
                return done
            job = claimed[0]
            began = time.perf_counter()
            result = [(job.job.id, job.attempt, {"ok": True})]
            (outcome,), claim = await self.queue.complete_and_claim(self.worker_id, result, 1)
            if outcome.accepted:
                self.completed[job.job.id] = time.perf_counter()
            done += 1
            claimed = claim.jobs if claim is not None else []
            self.due_s = claim.due_in_s if claim is not None else None

    def reset(self) -> None:
        self.claims, self.empty, self.claim_ms = 0, 0, []


class Fleet:
    """Simulated workers of one or more services, their wake hub and their tasks."""

    def __init__(self, url: str, namespace: str, connections: int) -> None:
        self.redis = connect(f"{url}?max_connections={connections}")
        self.queue = JobQueue(self.redis, namespace=namespace)
        self.hub = WakeHub(self.redis)
        self.workers: list[SimWorker] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()

    async def add(self, count: int, service: str, prefix: str) -> list[SimWorker]:
        added = [
            SimWorker(self.queue, f"{prefix}-{i}", service, self.stopping) for i in range(count)
        ]
        for start in range(0, count, 100):
            await asyncio.gather(*(w.register() for w in added[start : start + 100]))
        keys = self.queue.keys
        await self.hub.add({keys.worker_wake(w.worker_id): w for w in added})
        self.workers += added
        return added

    async def start(self, housekeeping: bool = True) -> None:
        """Every worker claims once (and is listed as idle), then serves."""
        for worker in self.workers:
            self.tasks.append(asyncio.create_task(worker.serve()))
            if housekeeping:
                self.tasks.append(asyncio.create_task(worker.housekeeping()))
        while sum(w.claims for w in self.workers) < len(self.workers):
            if failed := [t for t in self.tasks if t.done()]:
                failed[0].result()  # a worker's loop ended early: raise its error
            await asyncio.sleep(0.05)
        for worker in self.workers:
            worker.reset()

    async def close(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.woken.set()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=HEARTBEAT_S + 5)
            for task in pending:
                task.cancel()
        await self.hub.close()
        await self.queue.purge()
        await self.redis.aclose()


async def measure_idle(url: str, count: int, seconds: float) -> tuple[float, float, int]:
    fleet = Fleet(url, f"idle-{count}", 2 * count + 50)
    try:
        await fleet.add(count, "sim", "idle")
        await fleet.start()
        await asyncio.sleep(HEARTBEAT_S)  # every worker has beaten once
        cpu0, commands0 = await _redis_counters(fleet.redis)
        await asyncio.sleep(seconds)
        cpu1, commands1 = await _redis_counters(fleet.redis)
    finally:
        await fleet.close()
    errors = sum(w.errors for w in fleet.workers)
    return 100 * (cpu1 - cpu0) / seconds, (commands1 - commands0) / seconds, errors


@dataclass
class HerdFigures:
    useless_per_job: float
    p50_ms: float
    p99_ms: float
    redis_cpu_pct: float
    errors: int


async def produce(
    queue: JobQueue, seconds: float, prefix: str, rate: float = HERD_RATE, delay_s: float = 0.0
) -> tuple[dict[str, float], float]:
    """Submit ``rate`` jobs/s of ``sim`` for ``seconds``, each to run ``delay_s`` after it is
    submitted; when each is due (submit time plus delay) and the elapsed time."""
    submitted: dict[str, float] = {}
    began = time.perf_counter()
    for index in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        job_id = f"{prefix}-{index}"
        submitted[job_id] = time.perf_counter() + delay_s
        delay = delay_s or None
        await queue.submit(JobSpec(id=job_id, service_required="sim", payload={}, delay_s=delay))
    return submitted, time.perf_counter() - began


async def measure_herd(
    url: str, count: int, seconds: float, same: bool, delay_s: float = 0.0
) -> HerdFigures:
    kind = ("scheduled" if delay_s else "same") if same else "other"
    fleet = Fleet(url, f"herd-{kind}-{count}", 2 * count + 60)
    try:
        if same:
            runners = await fleet.add(count, "sim", "sim")
            counted = runners
        else:
            counted = await fleet.add(count, "other", "other")
            runners = await fleet.add(1, "sim", "real")
        await fleet.start()
        cpu0, _ = await _redis_counters(fleet.redis)
        submitted, elapsed = await produce(fleet.queue, seconds, "herd", delay_s=delay_s)
        cpu1, _ = await _redis_counters(fleet.redis)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(len(w.completed) for w in runners) >= len(submitted):
                break
            await asyncio.sleep(0.05)
    finally:
        await fleet.close()
    done = {job: at for w in runners for job, at in w.completed.items()}
    latencies = [(done[job] - at) * 1000 for job, at in submitted.items() if job in done]
    return HerdFigures(
        sum(w.empty for w in counted) / len(submitted),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        100 * (cpu1 - cpu0) / elapsed,
        sum(w.errors for w in fleet.workers),
    )


@dataclass
class BusyPart:
    claim_ms: list[float]
    last_done: float
    completed: int


async def _busy_part(url: str, namespace: str, ids: Sequence[int], go_key: str) -> BusyPart:
    """One process's share of the busy fleet: register, say ready, wait for go, drain."""
    fleet = Fleet(url, namespace, len(ids) + 20)
    workers = [SimWorker(fleet.queue, f"busy-{i}", "sim", fleet.stopping) for i in ids]
    try:
        for start in range(0, len(workers), 100):
            await asyncio.gather(*(w.register() for w in workers[start : start + 100]))
        await fleet.redis.incr(go_key + ":ready")
        while not await fleet.redis.exists(go_key):  # noqa: ASYNC110 (another process sets it)
            await asyncio.sleep(0.005)

        async def drain(worker: SimWorker) -> None:
            await worker.claim_and_complete()  # until a claim finds nothing

        await asyncio.gather(*(drain(w) for w in workers))
    finally:
        await fleet.redis.aclose()
    return BusyPart(
        claim_ms=[ms for w in workers for ms in w.claim_ms],
        last_done=max((t for w in workers for t in w.completed.values()), default=0.0),
        completed=sum(len(w.completed) for w in workers),
    )


def _busy_process(url: str, namespace: str, ids: Sequence[int], go_key: str) -> BusyPart:
    # perf_counter is not comparable across processes: report the wall clock instead.
    part = asyncio.run(_busy_part(url, namespace, ids, go_key))
    part.last_done = time.time() - (time.perf_counter() - part.last_done)
    return part


async def measure_busy(
    url: str, count: int, processes: int, jobs_per_worker: int
) -> tuple[float, float, float, float]:
    namespace = f"busy-{count}"
    redis = connect(url)
    queue = JobQueue(redis, namespace=namespace)
    jobs = jobs_per_worker * count
    for start in range(0, jobs, 2000):
        await queue.submit_many(
            [JobSpec(service_required="sim", payload={}) for _ in range(min(2000, jobs - start))]
        )
    go_key = queue.keys.prefix + "bench:go"
    shares = [range(p, count, processes) for p in range(processes)]
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            loop = asyncio.get_running_loop()
            futures = [
                loop.run_in_executor(pool, _busy_process, url, namespace, share, go_key)
                for share in shares
            ]
            while int(await redis.get(go_key + ":ready") or 0) < processes:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            cpu0, _ = await _redis_counters(redis)
            began = time.time()
            await redis.set(go_key, 1)
            parts = await asyncio.gather(*futures)
            cpu1, _ = await _redis_counters(redis)
    finally:
        await redis.delete(go_key, go_key + ":ready")
        await queue.purge()
        await redis.aclose()
    elapsed = max(part.last_done for part in parts) - began
    claims = [ms for part in parts for ms in part.claim_ms]
    completed = sum(part.completed for part in parts)
    redis_cpu_pct = 100 * (cpu1 - cpu0) / (time.time() - began)
    return completed / elapsed, percentile(claims, 0.5), percentile(claims, 0.99), redis_cpu_pct


@dataclass(frozen=True)
class Options:
    seconds: float
    processes: int
    monitors: int
    phases: Sequence[str]
    jobs_per_worker: int
    fanout_rate: float


async def measure(url: str, count: int, options: Options, fanout: bool) -> FleetFigures:
    seconds, phases = options.seconds, options.phases
    figures = FleetFigures(count)
    if "idle" in phases:
        idle_cpu, idle_commands, errors = await measure_idle(url, count, seconds)
        figures.idle_redis_cpu_pct, figures.idle_commands_per_s = idle_cpu, idle_commands
        if errors:
            figures.notes.append(f"idle: {errors} Redis calls of the simulated workers failed")
    herd_s = min(seconds, 10.0)
    if "herd-other" in phases:
        other = await measure_herd(url, count, herd_s, same=False)
        figures.other_useless_per_job = other.useless_per_job
        figures.other_p50_ms, figures.other_p99_ms = other.p50_ms, other.p99_ms
        figures.herd_redis_cpu_pct = other.redis_cpu_pct
        if other.errors:
            figures.notes.append(f"herd-other: {other.errors} Redis calls failed")
    if "herd-same" in phases:
        same = await measure_herd(url, count, herd_s, same=True)
        figures.same_empty_per_job = same.useless_per_job
        figures.same_p50_ms, figures.same_p99_ms = same.p50_ms, same.p99_ms
        if same.errors:
            figures.notes.append(f"herd-same: {same.errors} Redis calls failed")
    if "herd-scheduled" in phases:
        late = await measure_herd(url, count, herd_s, same=True, delay_s=SCHEDULED_DELAY_S)
        figures.scheduled_empty_per_job = late.useless_per_job
        figures.scheduled_late_p50_ms, figures.scheduled_late_p99_ms = late.p50_ms, late.p99_ms
        if late.errors:
            figures.notes.append(f"herd-scheduled: {late.errors} Redis calls failed")
    if "busy" in phases:
        busy = await measure_busy(url, count, options.processes, options.jobs_per_worker)
        figures.busy_jobs_per_s, figures.busy_claim_p50_ms, figures.busy_claim_p99_ms = busy[:3]
        figures.busy_redis_cpu_pct = busy[3]
    if fanout and "fanout" in phases and options.monitors:
        lag = await measure_fanout(url, options.monitors, herd_s, options.fanout_rate)
        figures.fanout_monitors = options.monitors
        figures.fanout_lag_p50_ms, figures.fanout_lag_p99_ms = lag.p50_ms, lag.p99_ms
        figures.fanout_lag_max_ms, figures.fanout_delivered_pct = lag.max_ms, lag.delivered_pct
        figures.fanout_events_per_s = lag.events_per_s
    return figures


def _cell(value: float | None, form: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{form}}{unit}"


def table(figures: list[FleetFigures]) -> str:
    lines = [
        "| workers | idle: Redis CPU | idle: commands/s | other service idle: useless claims "
        "per job | p50 / p99 | same service idle: empty claims per job | p50 / p99 "
        "| scheduled, same service idle: empty claims per job | late p50 / p99 "
        "| busy: jobs/s | busy: claim p50 / p99 | busy: Redis CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.workers:,} | {_cell(f.idle_redis_cpu_pct, '.1f', ' % of a core')} "
            f"| {_cell(f.idle_commands_per_s, ',.0f')} "
            f"| **{_cell(f.other_useless_per_job, '.2f')}** "
            f"| {_cell(f.other_p50_ms, '.1f')} / {_cell(f.other_p99_ms, '.1f', ' ms')} "
            f"| **{_cell(f.same_empty_per_job, '.2f')}** "
            f"| {_cell(f.same_p50_ms, '.1f')} / {_cell(f.same_p99_ms, '.1f', ' ms')} "
            f"| **{_cell(f.scheduled_empty_per_job, '.2f')}** "
            f"| {_cell(f.scheduled_late_p50_ms, '.1f')} / "
            f"{_cell(f.scheduled_late_p99_ms, '.1f', ' ms')} "
            f"| {_cell(f.busy_jobs_per_s, ',.0f')} "
            f"| {_cell(f.busy_claim_p50_ms, '.2f')} / {_cell(f.busy_claim_p99_ms, '.2f', ' ms')} "
            f"| {_cell(f.busy_redis_cpu_pct, '.0f', ' % of a core')} |"
        )
    return "\n".join(lines)


def fanout_table(figures: list[FleetFigures]) -> str:
    lines = []
    fanout = [f for f in figures if f.fanout_monitors]
    if fanout:
        lines += [
            "| monitors | events/s (each to every monitor) | event lag p50 / p99 / max "
            "| events a monitor had 2 s after the producer stopped |",
            "|---|---|---|---|",
        ]
        for f in fanout:
            lines.append(
                f"| {f.fanout_monitors} | {_cell(f.fanout_events_per_s, ',.0f')} "
                f"| {_cell(f.fanout_lag_p50_ms, '.1f')} / "
                f"{_cell(f.fanout_lag_p99_ms, '.1f')} / {_cell(f.fanout_lag_max_ms, '.1f', ' ms')}"
                f" | {_cell(f.fanout_delivered_pct, '.1f', ' %')} |"
            )
    return "\n".join(lines)


async def run(counts: list[int], options: Options) -> list[FleetFigures]:
    with (
        tempfile.TemporaryDirectory(prefix="emp-fleet-") as directory,
        EmbeddedValkey(Path(directory), persistent=False) as server,
    ):
        admin = connect(server.url)
        await admin.config_set("maxclients", 15000)
        await admin.aclose()
        results = []
        for index, count in enumerate(counts):
            # The fan-out does not depend on the fleet's size (one worker runs the jobs).
            figures = await measure(server.url, count, options, fanout=index == 0)
            print(json.dumps(asdict(figures)), flush=True)
            results.append(figures)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=1, help="processes for the busy phase")
    parser.add_argument("--monitors", type=int, default=200)
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--jobs-per-worker", type=int, default=20, help="for the busy phase")
    parser.add_argument("--fanout-rate", type=float, default=20.0, help="jobs/s, fanout phase")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    options = Options(
        args.seconds,
        args.processes,
        args.monitors,
        args.phases,
        args.jobs_per_worker,
        args.fanout_rate,
    )
    figures = asyncio.run(run(args.workers, options))
    print(table(figures))
    print(fanout_table(figures))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(f) for f in figures], indent=2))
    if args.write_docs:
        from bench.docs_section import write_section

        sizes = " ".join(map(str, args.workers))
        load = os.getloadavg()[0]
        command = (
            f"python -m bench.fleet_scale --workers {sizes} --seconds {args.seconds:g} "
            f"--processes {args.processes} --monitors {args.monitors} "
            f"--jobs-per-worker {args.jobs_per_worker} --fanout-rate {args.fanout_rate:g} "
            f"--phases {' '.join(args.phases)}"
        )
        context = (
            f"`{command}` ({platform.machine()}, {os.cpu_count()} cores, load average "
            f"{load:.1f} when it ended; the simulated workers share one Python process with "
            "the producer"
        )
        if set(args.phases) - {"fanout"}:
            text = f"{context})\n\n{table(figures)}"
            write_section("fleet-scale-bench", "Fleet scale (issue 18)", text)
        if "fanout" in args.phases and args.monitors:
            text = f"{context} and the monitors)\n\n{fanout_table(figures)}"
            write_section("fleet-fanout-bench", "Fleet scale: event fan-out (issue 18)", text)


if __name__ == "__main__":
    main()
