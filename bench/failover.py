"""Failover run: jobs in flight while the primary is SIGKILLed and the sentinels promote a replica.

    python -m bench.failover [--jobs 5000] [--rate 400] [--workers 4] [--no-durability]
                             [--write-docs]

A primary, two replicas and three sentinels (the embedded ``valkey-server``, see
``emp_queue.testing.replication``) run on loopback; ``emp worker`` processes (simulation
connector, jobs of one step) connect through ``redis+sentinel://``. A producer in this process
submits ``--jobs`` jobs at ``--rate`` jobs/s, each with its own id, and resubmits a job until
the broker acknowledges it, as a client would. When a third of them are acknowledged the
primary is SIGKILLed. The run then waits for every job to end and counts: acknowledged jobs
missing from the new primary (lost), jobs not terminal, jobs that ran twice (their completion
or claim was lost with the old primary), and how long after the promotion the first job
completed. The end-to-end test ``tests/e2e/test_failover.py`` runs the same scenario, smaller.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.harness import cpu_name, percentile
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.core.broker import connect, free_loopback_port
from emp_queue.core.machines import MachineRegistry
from emp_queue.core.queue import JobQueue
from emp_queue.core.scripts import Durability
from emp_queue.models import Job, JobSpec, JobStatus, WorkerCapabilities
from emp_queue.testing.replication import SentinelSet

EMP = Path(sys.executable).parent / "emp"
TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
RESULTS = Path(__file__).parent / "results"


@dataclass
class FailoverReport:
    jobs: int
    durability: bool
    acknowledged: int = 0
    refused_attempts: int = 0
    lost: list[str] = field(default_factory=list)
    not_terminal: list[str] = field(default_factory=list)
    not_completed: int = 0
    ran_twice: int = 0
    failover_s: float = 0.0
    """SIGKILL of the primary → a replica answers as the new primary."""
    resumed_after_promotion_s: float | None = None
    """Promotion → the first job completed after it."""
    run_s: float = 0.0
    api_ready_after_promotion_s: float | None = None
    """Promotion → the API process's /ready answers 200 again (with ``with_api``)."""
    api_job_completed: bool | None = None
    """A job submitted through the API after the failover completed (with ``with_api``)."""
    machine_status_after_promotion_s: float | None = None
    """Promotion → the machine agent's first status on the new primary (``with_machine``)."""
    machine_worker_beat_after_promotion_s: float | None = None
    """Promotion → the first heartbeat of the agent's worker on the new primary."""
    machine_agent_exited: bool | None = None
    """The agent process ended during the run (it must ride the failover, not restart)."""
    machine_worker_restarts: int | None = None
    """Restarts of the agent's worker processes, as its last status reports them."""


@contextmanager
def workers(url: str, namespace: str, count: int, durable: bool, logs: Path) -> Iterator[None]:
    env = {
        **os.environ,
        "EMP_REDIS_URL": url,
        "EMP_NAMESPACE": namespace,
        "EMP_STORAGE_LOCAL_DIR": str(logs / "assets"),
        "EMP_WORKER_HEARTBEAT_INTERVAL_S": "0.5",
        "EMP_WORKER_SWEEP_INTERVAL_S": "0.5",
        "EMP_QUEUE_LEASE_S": "5",
        "EMP_REDIS_WAIT_REPLICAS": "1" if durable else "0",
        "EMP_LOG_LEVEL": "WARNING",
    }
    processes = []
    for index in range(count):
        with (logs / f"worker-{index}.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    [str(EMP), "worker", "--worker-id", f"fo-{index}", "--concurrency", "4"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait()


@contextmanager
def api_process(url: str, namespace: str, durable: bool, logs: Path) -> Iterator[str]:
    """``emp api`` on a free loopback port, through the same replicated URL; its base URL."""
    port = free_loopback_port()
    env = {
        **os.environ,
        "EMP_REDIS_URL": url,
        "EMP_NAMESPACE": namespace,
        "EMP_API_HOST": "127.0.0.1",
        "EMP_API_PORT": str(port),
        "EMP_API_SERVICES": '["simulation"]',
        "EMP_REDIS_WAIT_REPLICAS": "1" if durable else "0",
    }
    with (logs / "api.log").open("w") as log:
        process = subprocess.Popen([str(EMP), "api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


MACHINE_ID = "fo-machine"


@contextmanager
def machine_agent(
    url: str, namespace: str, durable: bool, logs: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``emp machine`` with one simulation worker, through the same replicated URL."""
    env = {
        **os.environ,
        "EMP_REDIS_URL": url,
        "EMP_NAMESPACE": namespace,
        "WORKERS": "simulation:1",
        "EMP_MACHINE_ID": MACHINE_ID,
        "EMP_HEALTH_PORT": "0",
        "EMP_MACHINE_LOG_DIR": str(logs / MACHINE_ID),
        "EMP_MACHINE_STATUS_INTERVAL_S": "0.5",
        "EMP_STORAGE_LOCAL_DIR": str(logs / "assets"),
        "EMP_WORKER_HEARTBEAT_INTERVAL_S": "0.5",
        "EMP_WORKER_SWEEP_INTERVAL_S": "0.5",
        "EMP_QUEUE_LEASE_S": "5",
        "EMP_REDIS_WAIT_REPLICAS": "1" if durable else "0",
        "EMP_LOG_LEVEL": "WARNING",
    }
    with (logs / "machine.log").open("w") as log:
        # Its own process group: the agent's workers go with it at the end.
        process = subprocess.Popen(
            [str(EMP), "machine"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _first_stamp_after(redis: Redis, key: str, member: str, after_ms: float) -> float | None:
    """Seconds from ``after_ms`` until ``member``'s score in ``key`` passes it (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            score = await redis.zscore(key, member)
        except RedisError:
            score = None
        if score is not None and score > after_ms:
            return (score - after_ms) / 1000
        await asyncio.sleep(0.05)
    return None


async def _ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/ready", timeout=1)).status_code == 200
    except httpx.TransportError:
        return False


async def _wait_ready(api: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 60
    while not await _ready(api):
        if time.monotonic() > deadline:
            raise AssertionError("emp api was not ready within 60 s; see api.log")
        await asyncio.sleep(0.1)


async def _wait_registered(queue: JobQueue, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(await queue.live_workers()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} workers registered within 30 s")
        await asyncio.sleep(0.1)


async def run_failover(
    directory: Path,
    *,
    jobs: int,
    rate: float,
    worker_count: int = 2,
    durable: bool = True,
    finish_timeout_s: float = 120.0,
    with_api: bool = False,
    with_machine: bool = False,
) -> FailoverReport:
    """The scenario; ``with_api`` adds an ``emp api`` process and ``with_machine`` an
    ``emp machine`` agent with one worker, each of which must ride the failover too."""
    report = FailoverReport(jobs=jobs, durability=durable)
    namespace = "failover"
    async with contextlib.AsyncExitStack() as stack:
        sentinels = stack.enter_context(SentinelSet(directory / "valkey"))
        redis = connect(sentinels.url)
        queue = JobQueue(
            redis, namespace=namespace, lease_s=5, durability=Durability(1 if durable else 0, 1000)
        )
        try:
            stack.enter_context(workers(sentinels.url, namespace, worker_count, durable, directory))
            api = None
            if with_api:
                base_url = stack.enter_context(
                    api_process(sentinels.url, namespace, durable, directory)
                )
                key = await ApiKeyStore(redis, queue.keys).create(Role.ADMIN, label="failover")
                await redis.wait(2, 1000)  # the key is on the replicas before the primary dies
                api = await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=base_url, headers={"Authorization": f"Bearer {key.secret}"}
                    )
                )
            agent = None
            if with_machine:
                agent = stack.enter_context(
                    machine_agent(sentinels.url, namespace, durable, directory)
                )
            await _wait_registered(queue, worker_count + (1 if with_machine else 0))
            if api is not None:
                await _wait_ready(api)  # serving before the failover, not started during it
            machine_worker = await _machine_worker(queue) if with_machine else None
            await _run(queue, sentinels, report, rate, finish_timeout_s, api, machine_worker)
            if agent is not None:
                report.machine_agent_exited = agent.poll() is not None
                record = await MachineRegistry(redis, queue.keys, queue.events).get(MACHINE_ID)
                report.machine_worker_restarts = sum(s.restarts for s in record.services)
        finally:
            await redis.aclose()
    return report


async def _run(
    queue: JobQueue,
    sentinels: SentinelSet,
    report: FailoverReport,
    rate: float,
    finish_timeout_s: float,
    api: httpx.AsyncClient | None = None,
    machine_worker: str | None = None,
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(report.jobs)]
    acknowledged: list[str] = []
    killed = asyncio.Event()
    promoted_at: list[float] = []

    async def produce() -> None:
        started = time.monotonic()
        for index, job_id in enumerate(ids):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            spec = JobSpec(
                id=job_id,
                service_required="simulation",
                payload={"steps": 1, "step_delay_s": 0},
            )
            while True:
                try:
                    await queue.submit(spec)
                    break
                except RedisError:
                    report.refused_attempts += 1
                    await asyncio.sleep(0.05)
            acknowledged.append(job_id)
            if len(acknowledged) == len(ids) // 3:
                killed.set()

    async def fail_over() -> None:
        await killed.wait()
        old = await asyncio.to_thread(sentinels.kill_primary)
        killed_at = time.monotonic()
        await asyncio.to_thread(sentinels.wait_promotion, old)
        report.failover_s = time.monotonic() - killed_at
        promoted_at.append(time.time())
        if machine_worker is not None:
            promoted_ms = promoted_at[0] * 1000
            keys = queue.keys
            report.machine_status_after_promotion_s, beat = await asyncio.gather(
                _first_stamp_after(queue.redis, keys.machines, MACHINE_ID, promoted_ms),
                _first_stamp_after(queue.redis, keys.workers, machine_worker, promoted_ms),
            )
            report.machine_worker_beat_after_promotion_s = beat
        if api is not None:
            promoted = time.monotonic()
            while not await _ready(api) and time.monotonic() < promoted + 60:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            report.api_ready_after_promotion_s = time.monotonic() - promoted

    started = time.monotonic()
    await asyncio.gather(produce(), fail_over())
    report.acknowledged = len(acknowledged)
    deadline = time.monotonic() + finish_timeout_s
    while True:
        jobs = await _jobs(queue, acknowledged)
        pending = [job_id for job_id in acknowledged if job_id not in jobs or
                   jobs[job_id].status not in TERMINAL]  # fmt: skip
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    report.run_s = time.monotonic() - started
    if api is not None:
        report.api_job_completed = await _job_through_api(api)
    report.lost = [job_id for job_id in acknowledged if job_id not in jobs]
    report.not_terminal = [j for j in acknowledged if j in jobs and jobs[j].status not in TERMINAL]
    report.not_completed = sum(1 for job in jobs.values() if job.status != JobStatus.COMPLETED)
    report.ran_twice = sum(1 for job in jobs.values() if job.attempt > 1)
    promoted_ms = promoted_at[0] * 1000
    after = [job.finished_at for job in jobs.values() if job.finished_at and
             job.finished_at >= promoted_ms]  # fmt: skip
    if after:
        report.resumed_after_promotion_s = (min(after) - promoted_ms) / 1000


async def _machine_worker(queue: JobQueue) -> str:
    """The id of the agent's worker (registered before the run began)."""
    for worker in await queue.workers():
        if worker.machine_id == MACHINE_ID:
            return worker.worker_id
    raise AssertionError(f"no worker of machine {MACHINE_ID} is registered; see machine.log")


async def _job_through_api(api: httpx.AsyncClient) -> bool:
    """A job submitted through the API after the failover runs to completion."""
    response = await api.post("/api/jobs", json={"service_required": "simulation"})
    if response.status_code != 201:
        return False
    job_id = response.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await api.get(f"/api/jobs/{job_id}")).json()["status"] == JobStatus.COMPLETED:
            return True
        await asyncio.sleep(0.1)
    return False


async def _jobs(queue: JobQueue, ids: list[str]) -> dict[str, Job]:
    found: dict[str, Job] = {}
    for start in range(0, len(ids), 500):
        while True:
            try:
                chunk = await queue.get_many(ids[start : start + 500])
                break
            except RedisError:
                await asyncio.sleep(0.1)
        found.update({job.id: job for job in chunk})
    return found


@dataclass
class WaitCost:
    durability: bool
    submit_p50_ms: float
    submit_p99_ms: float
    round_p50_ms: float
    """submit + claim + complete, one job at a time."""
    concurrent_jobs_s: float
    """200 submitters at once (their submits grouped into shared script runs)."""


async def measure_wait_cost(directory: Path, samples: int = 1000) -> list[WaitCost]:
    """What ``WAIT 1`` adds, on the same primary with two replicas on loopback."""
    costs = []
    with SentinelSet(directory / "valkey-cost") as sentinels:
        redis = connect(sentinels.url)
        try:
            for durable in (False, True):
                queue = JobQueue(
                    redis, namespace=f"cost-{durable}", durability=Durability(int(durable), 1000)
                )
                await queue.register_worker("w", WorkerCapabilities(services=["sim"]))
                spec = JobSpec(service_required="sim", payload={})
                submits, rounds = [], []
                for _ in range(samples):
                    began = time.perf_counter()
                    job = await queue.submit(spec)
                    submits.append((time.perf_counter() - began) * 1000)
                    [claimed] = await queue.claim("w")
                    await queue.complete("w", job.id, claimed.attempt, {"ok": True})
                    rounds.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                for _ in range(10):
                    await asyncio.gather(*(queue.submit(spec) for _ in range(200)))
                rate = 2000 / (time.perf_counter() - began)
                costs.append(
                    WaitCost(
                        durable,
                        percentile(submits, 0.5),
                        percentile(submits, 0.99),
                        percentile(rounds, 0.5),
                        rate,
                    )
                )
        finally:
            await redis.aclose()
    return costs


def _cost_table(costs: list[WaitCost]) -> str:
    lines = [
        "| durability | submit p50 | submit p99 | submit + claim + complete p50 | "
        "200 concurrent submitters |",
        "|---|---|---|---|---|",
    ]
    for c in costs:
        lines.append(
            f"| {'WAIT 1 replica' if c.durability else 'off'} | {c.submit_p50_ms:.2f} ms | "
            f"{c.submit_p99_ms:.2f} ms | {c.round_p50_ms:.2f} ms | "
            f"{c.concurrent_jobs_s:,.0f} jobs/s |"
        )
    return "\n".join(lines)


def _table(reports: list[FailoverReport]) -> str:
    lines = [
        "| durability | jobs | acknowledged | lost | not terminal | ran twice | refused "
        "submits (retried) | SIGKILL → promotion | promotion → first completion | all terminal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        resumed = (
            "—" if r.resumed_after_promotion_s is None else f"{r.resumed_after_promotion_s:.2f} s"
        )
        lines.append(
            f"| {'WAIT 1 replica' if r.durability else 'off'} | {r.jobs} | {r.acknowledged} | "
            f"{len(r.lost)} | {len(r.not_terminal)} | {r.ran_twice} | {r.refused_attempts} | "
            f"{r.failover_s:.2f} s | {resumed} | {r.run_s:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--no-durability", action="store_true", help="only the run without WAIT")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    reports = []
    for durable in [False] if args.no_durability else [True, False]:
        with tempfile.TemporaryDirectory(prefix="emp-failover-") as directory:
            report = asyncio.run(
                run_failover(
                    Path(directory),
                    jobs=args.jobs,
                    rate=args.rate,
                    worker_count=args.workers,
                    durable=durable,
                )
            )
        print(json.dumps({**asdict(report), "lost": len(report.lost)}, indent=2))
        reports.append(report)
    print(_table(reports))
    with tempfile.TemporaryDirectory(prefix="emp-wait-cost-") as directory:
        costs = asyncio.run(measure_wait_cost(Path(directory)))
    print(_cost_table(costs))
    RESULTS.mkdir(exist_ok=True)
    results = {"failover": [asdict(r) for r in reports], "wait_cost": [asdict(c) for c in costs]}
    (RESULTS / "failover.json").write_text(json.dumps(results, indent=2))
    if args.write_docs:
        from bench.docs_section import write_section

        command = f"python -m bench.failover --jobs {args.jobs} --rate {args.rate:g} " \
                  f"--workers {args.workers}"  # fmt: skip
        cost = f"Cost of durability (same run, one process, loopback):\n\n{_cost_table(costs)}"
        text = f"`{command}` ({cpu_name()})\n\n{_table(reports)}\n\n{cost}"
        write_section("failover-bench", "Failover (issue 18)", text)


if __name__ == "__main__":
    main()
