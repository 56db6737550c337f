"""What model affinity costs the claim (issue 16).

    python -m bench.affinity_bench [--quick] [--write-docs]

Runs against a private Valkey (the embedded binary, no persistence) that it starts and stops
itself. 100,000 pending jobs over 1,000 classes (100 models x 10 customers, each job naming
one model); one worker has 3 models loaded, 20 installed and the rest fetchable, so every
class matches and most claims read the window. Claim latency (claim + release, one job) with
affinity on (the default 30 s window) and off, fair share on (default) in both; and with the
affinity holds on as well (an hour long, so every check is live): a second, free worker has
three other models loaded, so the classes needing them are held for the claiming worker and
each claim checks the hold once per class it looks at.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.docs_section import write_section
from bench.harness import percentile
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.gc_tuning import freeze_startup_heap
from emp_queue.models import JobSpec, WorkerCapabilities

RESULTS = Path(__file__).parent / "results" / "affinity.json"
MODELS, CUSTOMERS = 100, 10


def spec(n: int, classes: int) -> JobSpec:
    slot = n % classes
    return JobSpec(
        service_required="sim",
        customer_id=f"c{slot // MODELS}",
        requirements={"models": [f"m{slot % MODELS:03d}"]},
    )


async def latency(url: str, pending: int, classes: int, claims: int) -> dict[str, Any]:
    redis = connect(url)
    models = [f"m{n:03d}" for n in range(MODELS)]
    held = {"loaded": models[:3], "installed": models[:20], "fetchable": models[20:]}
    worker = WorkerCapabilities.model_validate({"services": ["sim"], "models": {"sim": held}})
    result: dict[str, Any] = {"pending": pending, "classes": classes, "claims": claims}
    try:
        loader = JobQueue(redis, namespace="bench-affinity")
        await loader.purge()
        await loader.register_worker("w", worker)
        owner = {"loaded": models[3:6], "installed": models[3:6]}
        owner_caps = {"services": ["sim"], "models": {"sim": owner}}
        await loader.register_worker("owner", WorkerCapabilities.model_validate(owner_caps))
        # Free (its claim finds nothing yet) with its models loaded: the holds' index has it.
        assert await JobQueue(redis, namespace="bench-affinity").claim("owner") == []
        for start in range(0, pending, 2_000):
            batch = range(start, min(pending, start + 2_000))
            await loader.submit_many([spec(n, classes) for n in batch])
        # As `emp worker` does once started (emp_queue.gc_tuning): full collections walk only
        # what the claims create, not the setup's 100,000 submitted jobs' garbage and imports.
        freeze_startup_heap()
        variants = (("affinity on", 30.0, 0.0), ("affinity off", 0.0, 0.0),
                    ("affinity on + holds", 30.0, 3600.0))  # fmt: skip
        for label, window_s, hold_s in variants:
            queue = JobQueue(
                redis,
                namespace="bench-affinity",
                affinity_window_s=window_s,
                affinity_hold_s=hold_s,
                affinity_busy_hold_s=hold_s,
            )
            samples = []
            for _ in range(claims):
                started = time.perf_counter()
                [claimed] = await queue.claim("w")
                samples.append((time.perf_counter() - started) * 1000)
                await queue.release("w", claimed.job.id, claimed.attempt, "benchmark")
            result[label] = {
                "p50_ms": statistics.median(samples),
                "p99_ms": percentile(samples, 0.99),
            }
        await loader.purge()
    finally:
        await redis.aclose()
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"Command: `python -m bench.affinity_bench --claims {r['claims']} --write-docs`; "
        f"{r['pending']:,} pending jobs, "
        f"{r['classes']:,} classes, {r['claims']:,} claims each (claim timed, then released); "
        f"load average {r['load_average']} on 2 cores when it started (other agents' work "
        "shared the machine), so compare the two rows with each other, not with other sections.",
        "",
        "| Claim | p50 | p99 | target |",
        "|---|---|---|---|",
    ]
    for label in ("affinity on", "affinity off", "affinity on + holds"):
        figures = r[label]
        lines.append(
            f"| {label} | {figures['p50_ms']:.2f} ms | **{figures['p99_ms']:.2f} ms** | ≤ 2 ms |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.affinity_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 jobs, for a smoke run")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--claims", type=int, default=2_000, help="timed claims per variant")
    args = parser.parse_args()
    pending = 10_000 if args.quick else 100_000
    load_average = Path("/proc/loadavg").read_text().split()[0]
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedValkey(Path(data_dir), persistent=False) as server,
    ):
        result = asyncio.run(latency(server.url, pending, 1_000, args.claims))
    result["load_average"] = load_average
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    text = markdown(result)
    print(text)
    if args.write_docs and not args.quick:
        write_section("affinity-bench", "Model affinity in the claim (issue 16)", text)


if __name__ == "__main__":
    main()
