"""Start-up figures: ``emp machine`` start → ready, ``emp up`` → first demo job completed.

    python -m bench.stack_bench [--runs 3] [--write-docs]

Each run is a fresh process tree on fresh directories (a new embedded Valkey for
``emp up``), measured by the wall clock from spawning the command: the figures a user
waits for, Python start-up and imports included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.docs_section import write_section
from bench.harness import cpu_name as _cpu
from emp_queue.core.broker import EmbeddedValkey
from emp_queue.stack.demo_jobs import demo_batch

RESULTS = Path(__file__).parent / "results" / "stack.json"
KEY = re.compile(r"emp_[A-Za-z0-9_-]{20,}")
WORKERS = "simulation:2"
UP_WORKERS = "simulation:2,comfyui:auto,ollama:1,openai:1"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def machine_start(redis_url: str, workdir: Path, run: int) -> float:
    env = {
        **os.environ,
        "EMP_REDIS_URL": redis_url,
        "EMP_NAMESPACE": f"stackbench{run}",
        "WORKERS": WORKERS,
        "EMP_MACHINE_ID": f"bench-{run}",
        "EMP_HEALTH_PORT": "0",
        "EMP_MACHINE_LOG_DIR": str(workdir / f"logs-{run}"),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "emp_queue", "machine"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "ready in" in line:
            ready_s = time.perf_counter() - started
            break
    else:
        raise RuntimeError("emp machine exited before it was ready")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    return ready_s


def up_first_job(workdir: Path, run: int) -> tuple[float, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMP_")}
    env |= {
        "EMP_DATA_DIR": str(workdir / f"up-{run}"),
        "EMP_STORAGE_LOCAL_DIR": str(workdir / f"assets-{run}"),
        "EMP_API_PORT": str(port),
        "EMP_UP_PORT_OFFSET": str(random.randrange(20_000, 30_000, 10)),
        "EMP_UP_WORKERS": UP_WORKERS,
        "COLUMNS": "200",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "emp_queue", "up"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if (found := KEY.search(line)) is not None:
            key = found.group(0)
            break
    else:
        raise RuntimeError("emp up exited before it was ready")
    ready_s = time.perf_counter() - started
    first_s = asyncio.run(first_completion(f"http://127.0.0.1:{port}", key)) + ready_s
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    return ready_s, first_s


async def first_completion(url: str, key: str) -> float:
    started = time.perf_counter()
    services = {"simulation", "comfyui", "ollama", "openai"}
    jobs = [spec.model_dump(mode="json", exclude_none=True) for _, spec in demo_batch(services)]
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        submitted = (await http.post("/api/jobs/batch", json={"jobs": jobs})).json()["jobs"]
        ids = [job["id"] for job in submitted]
        while True:
            for job_id in ids:
                if (await http.get(f"/api/jobs/{job_id}")).json()["status"] == "completed":
                    return time.perf_counter() - started
            await asyncio.sleep(0.01)


def render(results: dict[str, Any]) -> str:
    machine, up_ready, up_first = results["machine_s"], results["up_ready_s"], results["up_first_s"]
    return "\n".join([
        f"Measured {results['date']} on {results['machine']} with `{results['command']}` "
        f"({len(machine)} runs each; median, then every run).",
        "",
        "| figure | median | runs | target |",
        "|---|---|---|---|",
        f"| `emp machine` start → ready (`WORKERS={WORKERS}`, real workers) "
        f"| **{statistics.median(machine):.2f} s** | {', '.join(f'{v:.2f}' for v in machine)} "
        "| ≤ 3 s |",
        f"| `emp up` start → stack ready (Valkey, API, machine with `{UP_WORKERS}` on fakes) "
        f"| {statistics.median(up_ready):.2f} s | {', '.join(f'{v:.2f}' for v in up_ready)} | — |",
        "| `emp up` start → first demo job completed "
        f"| **{statistics.median(up_first):.2f} s** | {', '.join(f'{v:.2f}' for v in up_first)} "
        "| ≤ 10 s |",
    ])  # fmt: skip


def write_docs(text: str) -> None:
    write_section("stack-bench", "Machine agent and local stack (issue 5)", text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stack_bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine_s": [], "up_ready_s": [], "up_first_s": []}
    with tempfile.TemporaryDirectory() as workdir:
        with EmbeddedValkey(Path(workdir) / "valkey", persistent=False) as valkey:
            for run in range(args.runs):
                results["machine_s"].append(machine_start(valkey.url, Path(workdir), run))
        for run in range(args.runs):
            ready, first = up_first_job(Path(workdir), run)
            results["up_ready_s"].append(ready)
            results["up_first_s"].append(first)
    results["date"] = time.strftime("%Y-%m-%d")
    results["machine"] = f"{platform.machine()}, {platform.python_version()}, " + _cpu()
    results["command"] = f"python -m bench.stack_bench --runs {args.runs}"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    text = render(results)
    print(text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
