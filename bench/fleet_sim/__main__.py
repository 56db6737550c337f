"""Compare scheduling policies on one synthetic GPU fleet trace.

    python -m bench.fleet_sim [--scale 90] [--policies a,b,c] [--write-docs]

Starts a private Valkey (the embedded binary, no persistence), replays the same fixed-seed
trace once per policy, each in its own namespace, through the real ``JobQueue`` scripts, and
prints the table. ``--write-docs`` also writes the plots to ``docs/benchmarks/`` and the
table into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench.docs_section import write_section
from bench.fleet_sim.fleet import Fleet
from bench.fleet_sim.policies import POLICIES
from bench.fleet_sim.report import PolicyResult, plot, table
from bench.fleet_sim.trace import Scenario, TraceShape, build
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.pools import DEFAULT_DELAY_MS, PoolRules
from emp_queue.core.queue import JobQueue

RESULTS = Path(__file__).parent.parent / "results" / "fleet_sim.json"
PLOTS = Path(__file__).parent.parent.parent / "docs" / "benchmarks"


async def run_policy(url: str, scenario: Scenario, key: str, scale: float) -> PolicyResult:
    policy = next(p for p in POLICIES if p.key == key)
    redis = connect(url)
    # Leases far beyond the run: no sweeper runs, and a scaled second must never expire one.
    # The claim's windows run on the server's clock: simulated seconds divided by the scale.
    queue = JobQueue(
        redis,
        namespace=f"fleet-sim-{key}",
        lease_s=3600,
        affinity_window_s=policy.affinity_window_s / scale,
        affinity_hold_s=policy.affinity_hold_s / scale,
        affinity_busy_hold_s=policy.affinity_busy_hold_s / scale,
        pools=PoolRules(
            enabled=policy.pools,
            automatic=False,
            delay_ms={pool: round(ms / scale) for pool, ms in DEFAULT_DELAY_MS.items()},
        ),
        fair_share_window_s=policy.fair_share_window_s / scale,
        fair_share_half_life_s=policy.fair_share_half_life_s / scale,
    )
    try:
        started = time.monotonic()
        tally = await Fleet(queue, scenario, policy, scale).run()
        makespan_s = (time.monotonic() - started) * scale
    finally:
        await queue.purge()
        await redis.aclose()
    return PolicyResult.of(policy.key, policy.label, tally, len(scenario.machines), makespan_s)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_sim", description=__doc__)
    parser.add_argument("--scale", type=float, default=90.0, help="simulated s per real s")
    parser.add_argument("--policies", default=",".join(p.key for p in POLICIES))
    parser.add_argument("--seed", type=int, default=TraceShape.seed)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    scenario = build(TraceShape(seed=args.seed))
    print(f"{len(scenario.jobs)} jobs, {len(scenario.models)} models, "
          f"{len(scenario.machines)} machines; scale {args.scale:g}x", flush=True)  # fmt: skip
    results = []
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedValkey(Path(data_dir), persistent=False) as server,
    ):
        for key in args.policies.split(","):
            started = time.monotonic()
            results.append(asyncio.run(run_policy(server.url, scenario, key, args.scale)))
            print(f"policy {key}: {time.monotonic() - started:.0f} s", flush=True)
    text = table(results)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            [{k: v for k, v in asdict(r).items() if k != "waits"} for r in results], indent=2
        )
    )
    if args.write_docs:
        plot(results, PLOTS)
        command = f"python -m bench.fleet_sim --scale {args.scale:g} --write-docs"
        write_section("fleet-sim", "Fleet simulator (issue 16)", f"Command: `{command}`\n\n{text}")


if __name__ == "__main__":
    main()
