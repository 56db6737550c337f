"""Webhook delivery throughput of one ``emp api`` process to a local receiver.

    python -m bench.webhook_bench [--jobs 20000] [--write-docs]

A private Valkey (the embedded binary) is started for the run. The webhooks' consumer
group is created first, then ``--jobs`` jobs with a ``webhook`` URL are submitted and
completed through the queue, so their events wait in the stream. Then one ``emp api``
process starts (its dispatcher on, everything else idle) and the clock runs from its
``/ready`` until the receiver — a separate process, a bare ASGI app under uvicorn — has
answered every distinct webhook-id. This covers the whole path in the API process: reading
the events through the group, recording each delivery in Redis, claiming, signing, posting
and recording the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.docs_section import write_section
from bench.harness import cpu_name as _cpu
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import JobSpec, WorkerCapabilities
from emp_queue.webhooks.intake import GROUP

RESULTS = Path(__file__).parent / "results" / "webhooks.json"
NAMESPACE = "hookbench"
EMP = Path(sys.executable).parent / "emp"
RECEIVER_PORT = 18231
API_PORT = 18232


async def prepare(url: str, jobs: int, receiver: str) -> None:
    redis = connect(url)
    try:
        queue = JobQueue(redis, namespace=NAMESPACE)
        await redis.xgroup_create(queue.keys.events, GROUP, id="$", mkstream=True)
        await queue.register_worker("bench", WorkerCapabilities(services=["sim"]))
        for start in range(0, jobs, 1000):
            specs = [
                JobSpec(service_required="sim", webhook=f"{receiver}/hook")
                for _ in range(min(1000, jobs - start))
            ]
            await queue.submit_many(specs)
            done = 0
            while done < len(specs):
                claimed = await queue.claim("bench", count=500)
                await queue.complete_many(
                    "bench", [(item.job.id, item.attempt, {"ok": True}) for item in claimed]
                )
                done += len(claimed)
    finally:
        await redis.aclose()


def wait_http(url: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def measure(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    receiver_url = f"http://127.0.0.1:{RECEIVER_PORT}"
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook_receiver", str(RECEIVER_PORT)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"{receiver_url}/count")
        asyncio.run(prepare(url, jobs, receiver_url))
        env = {
            **os.environ,
            "EMP_REDIS_URL": url,
            "EMP_NAMESPACE": NAMESPACE,
            "EMP_API_PORT": str(API_PORT),
            "EMP_WEBHOOKS_ALLOW_HOSTS": '["127.0.0.1/32"]',
            "EMP_WEBHOOKS_CONCURRENCY": str(concurrency),
            "EMP_LOG_LEVEL": "WARNING",
        }
        api = subprocess.Popen([str(EMP), "api"], env=env, stdout=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{API_PORT}/ready")
            cpu = psutil.Process(api.pid)
            cpu_before = sum(cpu.cpu_times()[:2])
            started = time.perf_counter()
            while True:
                counts = httpx.get(f"{receiver_url}/count").json()
                if counts["distinct"] >= jobs:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu_s = sum(cpu.cpu_times()[:2]) - cpu_before
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(timeout=30)
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=10)
    return {
        "jobs": jobs,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "deliveries_per_s": round(jobs / elapsed),
        "api_cpu_s": round(cpu_s, 2),
        "deliveries_per_cpu_s": round(jobs / cpu_s),
        "requests": counts["requests"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as data, EmbeddedValkey(Path(data), persistent=False) as vk:
        result = measure(vk.url, args.jobs, args.concurrency)
    result["load_average"] = round(load_before, 1)
    result["cores"] = os.cpu_count()
    result["machine"] = f"{_cpu()}, Python {platform.python_version()}"
    print(json.dumps(result, indent=2))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if args.write_docs:
        write_section("webhooks", "Webhook delivery (issue 17)", render(result))


def render(result: dict[str, Any]) -> str:
    return (
        "Command: `python -m bench.webhook_bench --write-docs` "
        f"({result['machine']}; load average {result['load_average']} on "
        f"{result['cores']} cores when it started: other work shared the machine).\n\n"
        "| jobs | dispatcher concurrency | seconds | deliveries/s | API CPU s | "
        "deliveries per API CPU-second | requests received |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['jobs']} | {result['concurrency']} | {result['seconds']} | "
        f"{result['deliveries_per_s']} | {result['api_cpu_s']} | "
        f"{result['deliveries_per_cpu_s']} | {result['requests']} |\n\n"
        "One `emp api` process, from `/ready` until the receiver (a separate process) had "
        "answered every webhook-id: reading the events through the consumer group, recording "
        "each delivery, claiming, signing (Standard Webhooks HMAC-SHA256), posting and "
        "recording the outcome. `requests received` above the job count would be duplicates "
        "(at-least-once); the run counts distinct ids. `deliveries per API CPU-second` is the "
        "rate one API process sustains with a core of its own; the wall-clock rate depends on "
        "what else the machine runs (the receiver and Valkey share it)."
    )


if __name__ == "__main__":
    main()
