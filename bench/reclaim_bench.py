"""Time from a worker's SIGKILL to its job being claimed again, with and without an agent.

    .venv/bin/python -m bench.reclaim_bench [--rounds 5] [--bare-rounds 1]

Under `emp machine` (two machines, one `simulation` worker each) the agent sees its worker
die and hands the job back at once (#20 item 4). Two bare `emp worker` processes have no
one to notice: the job waits for its lease (EMP_LEASE_S, 30 s by default) and the next sweep.
Both runs use the default lease, heartbeat and sweep intervals.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tests.e2e.test_machine_kill import machine

from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, JobStatus
from emp_queue.testing.namespaces import unique_namespace

LONG_JOB = {"steps": 2000, "step_delay_s": 0.05}
DEFAULTS = {"EMP_LEASE_S": "30", "EMP_WORKER_SWEEP_INTERVAL_S": "5"}


async def until(check: object, timeout_s: float, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s} s")
        await asyncio.sleep(poll_s)


async def kill_and_time(queue: JobQueue, kill: object) -> float:
    """Submit a long job, SIGKILL the process ``kill(worker_id)`` names, time the reclaim."""
    job = await queue.submit(JobSpec(service_required="simulation", payload=LONG_JOB))

    async def running() -> bool:
        return (await queue.get(job.id)).status is JobStatus.IN_PROGRESS

    await until(running, 60)
    holder = (await queue.get(job.id)).worker_id
    assert holder is not None
    victim: psutil.Process = kill(holder)  # type: ignore[operator]
    killed = time.monotonic()
    victim.send_signal(signal.SIGKILL)

    async def claimed_again() -> bool:
        current = await queue.get(job.id)
        return current.attempt > 1 and current.status is JobStatus.IN_PROGRESS

    await until(claimed_again, 120)
    seconds = time.monotonic() - killed
    await queue.cancel(job.id, "bench")
    return seconds


def worker_child(agent_pid: int) -> psutil.Process:
    (child,) = [c for c in psutil.Process(agent_pid).children() if "worker" in c.cmdline()]
    return child


async def under_agents(url: str, rounds: int, tmp: Path) -> list[float]:
    queue = JobQueue(connect(url), namespace=unique_namespace("reclaim"))
    namespace = queue.keys.namespace
    times = []
    async with (
        machine("first", url, namespace, tmp, DEFAULTS) as first,
        machine("second", url, namespace, tmp, DEFAULTS) as second,
    ):
        agents = {"first-simulation-0": first.pid, "second-simulation-0": second.pid}

        async def all_live() -> bool:
            return set(agents) <= set(await queue.live_workers())

        for _ in range(rounds):
            await until(all_live, 120, poll_s=0.2)
            times.append(await kill_and_time(queue, lambda w: worker_child(agents[w])))
    return times


async def bare_workers(url: str, rounds: int, tmp: Path) -> list[float]:
    queue = JobQueue(connect(url), namespace=unique_namespace("reclaim"))
    env = {
        **os.environ,
        "EMP_REDIS_URL": url,
        "EMP_NAMESPACE": queue.keys.namespace,
        "EMP_STORAGE_LOCAL_DIR": str(tmp / "assets"),
    }
    emp = Path(sys.executable).parent / "emp"
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(worker_id: str) -> None:
        processes[worker_id] = subprocess.Popen(
            [str(emp), "worker", "--worker-id", worker_id],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    times = []
    try:
        for worker_id in ("bare-a", "bare-b"):
            start(worker_id)
        for _ in range(rounds):

            async def all_live() -> bool:
                return set(processes) <= set(await queue.live_workers())

            await until(all_live, 120, poll_s=0.2)
            times.append(await kill_and_time(queue, lambda w: psutil.Process(processes[w].pid)))
            for worker_id, process in list(processes.items()):
                if process.poll() is not None:
                    start(worker_id)  # the killed one comes back for the next round
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
    return times


def summary(name: str, times: list[float]) -> str:
    shown = ", ".join(f"{t:.2f}" for t in times)
    return f"{name}: median {statistics.median(times):.2f} s, max {max(times):.2f} s ({shown})"


async def run(rounds: int, bare_rounds: int) -> None:
    with tempfile.TemporaryDirectory() as data, EmbeddedValkey(Path(data) / "valkey") as server:
        tmp = Path(data)
        print(
            summary(
                "worker SIGKILLed under emp machine", await under_agents(server.url, rounds, tmp)
            )
        )
        if bare_rounds:
            bare = await bare_workers(server.url, bare_rounds, tmp)
            print(summary("bare emp worker SIGKILLed (no agent)", bare))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bare-rounds", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.bare_rounds))


if __name__ == "__main__":
    main()
