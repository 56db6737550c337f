"""Redis time per job of a busy worker's scripts: what a claim and a complete cost the server.

    python -m bench.script_cost [--jobs 10000] [--workers 100] [--fused]

A private Valkey; ``--jobs`` zero-length jobs of one service (one class) are
submitted, then ``--workers`` workers (concurrency 1, as in the fleet-scale busy phase) drain
them in rounds: every worker completes its job, then every worker claims the next
(``--fused``: one call that completes and claims, ``JobQueue.complete_and_claim``). The
server's counters are reset before each half-round and read after it (``INFO
commandstats``): the time FCALL took on the server (the commands run inside included) and
those commands, per operation. The server's CPU per job (``INFO cpu``) adds what commandstats
does not see — reading requests, writing replies — and the counter calls themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass

from redis.asyncio import Redis

from bench.harness import private_valkey
from emp_queue.core.broker import connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import ClaimedJob, JobSpec, WorkerCapabilities

INNER_SKIP = {
    "fcall",
    "info",
    "config|resetstat",
    "function|load",
    "client|setinfo",
    "hello",
    "ping",
}


@dataclass
class Costs:
    jobs: int
    # operation -> (calls, µs on the server, inner command -> calls)
    per_operation: dict[str, tuple[int, float, dict[str, int]]]
    cpu_us_per_job: float


async def _cpu(redis: Redis) -> float:
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


class Tally:
    """Calls and server time of FCALL, and the commands run inside, between two resets."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.figures: dict[str, tuple[int, float, dict[str, int]]] = {}

    async def phase(self, name: str, calls: Awaitable[object]) -> None:
        await self.redis.config_resetstat()
        await calls
        stats = await self.redis.info("commandstats")
        fcall = stats.get("cmdstat_fcall", {"calls": 0, "usec": 0})
        inner = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in stats.items()
            if key.removeprefix("cmdstat_") not in INNER_SKIP
        }
        count, usec, before = self.figures.get(name, (0, 0.0, {}))
        for key, value in inner.items():
            before[key] = before.get(key, 0) + value
        self.figures[name] = (count + int(fcall["calls"]), usec + float(fcall["usec"]), before)


async def measure(url: str, jobs: int, workers: int, fused: bool) -> Costs:
    redis = connect(f"{url}?max_connections={workers + 10}")
    queue = JobQueue(redis, namespace="cost")
    tally = Tally(redis)
    try:
        ids = [f"w{i}" for i in range(workers)]
        for worker_id in ids:
            await queue.register_worker(worker_id, WorkerCapabilities(services=["sim"]))
        for start in range(0, jobs, 2000):
            await queue.submit_many(
                [
                    JobSpec(service_required="sim", payload={})
                    for _ in range(start, min(jobs, start + 2000))
                ]
            )
        held: dict[str, ClaimedJob] = {}

        async def claim(worker_id: str) -> None:
            claimed = await queue.claim(worker_id, count=1)
            if claimed:
                held[worker_id] = claimed[0]

        async def complete(worker_id: str) -> None:
            job = held.pop(worker_id)
            await queue.complete(worker_id, job.job.id, job.attempt, {"ok": True})

        async def complete_and_claim(worker_id: str) -> None:
            job = held.pop(worker_id)
            (outcome,), claim = await queue.complete_and_claim(
                worker_id, [(job.job.id, job.attempt, {"ok": True})], count=1
            )
            if not outcome.accepted or claim is None:
                raise RuntimeError(f"complete of {job.job.id} refused: {outcome.reason}")
            if claim.jobs:
                held[worker_id] = claim.jobs[0]

        done = 0
        cpu0 = await _cpu(redis)
        await tally.phase("claim", asyncio.gather(*(claim(w) for w in ids)))
        while held:
            working = list(held)
            done += len(working)
            if fused:
                await tally.phase(
                    "complete_and_claim", asyncio.gather(*(complete_and_claim(w) for w in working))
                )
            else:
                await tally.phase("complete", asyncio.gather(*(complete(w) for w in working)))
                await tally.phase("claim", asyncio.gather(*(claim(w) for w in working)))
        cpu1 = await _cpu(redis)
    finally:
        await queue.purge()
        await redis.aclose()
    return Costs(done, tally.figures, (cpu1 - cpu0) * 1e6 / done)


def report(costs: Costs) -> str:
    lines = [
        f"jobs: {costs.jobs}",
        "| operation | calls | µs per call | µs per job | commands inside per call |",
        "|---|---|---|---|---|",
    ]
    total = 0.0
    for name, (calls, usec, inner) in sorted(costs.per_operation.items()):
        total += usec / costs.jobs
        commands = ", ".join(
            f"{key} {count / calls:.2f}"
            for key, count in sorted(inner.items(), key=lambda x: -x[1])
        )
        lines.append(
            f"| {name} | {calls} | {usec / calls:.1f} | {usec / costs.jobs:.1f} | {commands} |"
        )
    lines.append(f"| all scripts | | | {total:.1f} | |")
    lines.append(
        f"server CPU per job (INFO cpu, the counter calls included): {costs.cpu_us_per_job:.1f} µs"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--fused", action="store_true", help="complete_and_claim")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_valkey() as url:
        costs = asyncio.run(measure(url, args.jobs, args.workers, args.fused))
    print(json.dumps(costs.__dict__) if args.json else report(costs))


if __name__ == "__main__":
    main()
