"""The API's benchmark: submit rate and latency next to a bare FastAPI endpoint, batch
submit rate, and SSE delivery latency from a worker's progress report to a client.

    python -m bench.api.api_bench [--write-docs]

Starts a private Valkey, ``emp api`` and the bare app (``bench/api/bare_app.py``) as
separate processes on loopback, drives them with ``wrk`` (closed loop, for the rate) and with
an open-loop generator at a fixed offered load (for the latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from bench.docs_section import write_section
from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.keys import Keys
from emp_queue.core.queue import JobQueue
from emp_queue.models import WorkerCapabilities

NAMESPACE = "bench-api"
HERE = Path(__file__).parent
RESULTS = HERE.parent / "results" / "api.json"
FANOUT = 200  # SSE clients following one job at once
JOB = {"service_required": "sim", "priority": 60, "payload": {"prompt": "a cat"}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve(command: list[str], env: dict[str, str], port: int, probe: str) -> Iterator[str]:
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}{probe}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{command} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def wrk_rate(url: str, key: str, seconds: int = 8, connections: int = 32) -> float:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(HERE / "post_job.lua"),
         f"{url}/api/jobs"],
        env={**os.environ, "EMP_BENCH_API_KEY": key}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match is None or non_2xx is not None:
        raise RuntimeError(f"wrk failed or got errors:\n{output}")
    return float(match.group(1))


async def fixed_load(url: str, key: str, rate: float, seconds: float) -> dict[str, float]:
    """Open loop: one request every 1/rate s whatever the answers; latency per request."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def one() -> None:
            start = time.perf_counter()
            response = await client.post("/api/jobs", json=JOB)
            response.raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)

        tasks = []
        begin = time.perf_counter()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {
        "rate": rate,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[int(0.99 * len(ordered)) - 1],
    }


async def batch_rate(
    url: str, key: str, batches: int = 40, size: int = 1000, concurrency: int = 4
) -> float:
    """Jobs per second through ``POST /api/jobs/batch``, ``concurrency`` requests in flight
    (the server's Python and Redis's Lua work overlap only across requests)."""
    headers = {"Authorization": f"Bearer {key}"}
    body = {"jobs": [JOB] * size}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

        async def poster(count: int) -> None:
            for _ in range(count):
                (await client.post("/api/jobs/batch", json=body)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(poster(batches // concurrency) for _ in range(concurrency)))
        return batches // concurrency * concurrency * size / (time.perf_counter() - start)


async def sse_latency(
    url: str, key: str, redis_url: str, reports: int = 200, followers: int = 1
) -> dict[str, float]:
    """Progress reported by a worker → the same event received by each of ``followers`` SSE
    clients following the job; also how many Redis connections the API holds meanwhile."""
    redis = connect(redis_url)
    queue = JobQueue(redis, namespace=NAMESPACE)
    worker = f"sse-worker-{followers}"
    await queue.register_worker(worker, WorkerCapabilities(services=["sse"]))
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=followers + 8)
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=limits
    ) as client:
        job = (await client.post("/api/jobs", json={"service_required": "sse"})).json()
        [claimed] = await queue.claim(worker)
        received: asyncio.Queue[float] = asyncio.Queue()
        connections_before = len(await redis.client_list())

        async def listen() -> None:
            async with aconnect_sse(client, "GET", f"/api/jobs/{job['id']}/events") as source:
                async for message in source.aiter_sse():
                    if not message.data:  # keep-alive comment
                        continue
                    data = json.loads(message.data).get("data", {})
                    if message.event == "update_job_progress" and data.get("message"):
                        received.put_nowait(time.time() * 1000 - float(data["message"]))

        listeners = [asyncio.create_task(listen()) for _ in range(followers)]
        await asyncio.sleep(0.5 + followers / 100)
        connections_during = len(await redis.client_list())
        for n in range(reports):
            await queue.report_progress(
                worker, job["id"], claimed.attempt, n % 100, repr(time.time() * 1000)
            )
            for _ in range(followers):
                latencies.append(await asyncio.wait_for(received.get(), 10))
            await asyncio.sleep(0.01)
        for listener in listeners:
            listener.cancel()
    await redis.aclose()
    ordered = sorted(latencies)
    return {"reports": reports, "followers": followers, "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[int(0.99 * len(ordered)) - 1],
            "api_redis_connections_added": connections_during - connections_before}  # fmt: skip


async def admin_key(redis_url: str) -> str:
    redis = connect(redis_url)
    try:
        return (await ApiKeyStore(redis, Keys(NAMESPACE)).create(Role.ADMIN)).secret
    finally:
        await redis.aclose()


def run(rate: float) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedValkey(Path(data_dir), persistent=False) as valkey,
    ):
        key = asyncio.run(admin_key(valkey.url))
        api_port, bare_port = free_port(), free_port()
        api_env = {
            "EMP_REDIS_URL": valkey.url, "EMP_NAMESPACE": NAMESPACE,
            "EMP_API_PORT": str(api_port), "EMP_API_RATE_LIMIT_PER_S": "1000000",
            "EMP_API_RATE_LIMIT_BURST": "1000000", "EMP_API_SERVICES": "[\"sim\", \"sse\"]",
        }  # fmt: skip
        emp = [str(Path(sys.executable).parent / "emp"), "api"]
        bare = [sys.executable, "-m", "bench.api.bare_app", "--port", str(bare_port)]
        results: dict[str, Any] = {}
        with serve(bare, {}, bare_port, "/docs") as bare_url:
            results["bare_rate"] = wrk_rate(bare_url, key)
            results["bare_fixed"] = asyncio.run(fixed_load(bare_url, key, rate, 10))
        with serve(emp, api_env, api_port, "/health") as api_url:
            results["api_rate"] = wrk_rate(api_url, key)
            results["api_fixed"] = asyncio.run(fixed_load(api_url, key, rate, 10))
            results["batch_jobs_per_s"] = asyncio.run(batch_rate(api_url, key))
            results["sse"] = asyncio.run(sse_latency(api_url, key, valkey.url))
            results["sse_fanout"] = asyncio.run(
                sse_latency(api_url, key, valkey.url, reports=50, followers=FANOUT)
            )
    return results


def markdown(r: dict[str, Any]) -> str:
    ratio = r["api_rate"] / r["bare_rate"]
    return "\n".join([
        f"Run {time.strftime('%Y-%m-%d')}; command: `python -m bench.api.api_bench --write-docs`.",
        "",
        "| Measure | Target | Result |",
        "|---|---|---|",
        f"| `POST /api/jobs` rate (wrk, 32 connections) vs bare FastAPI endpoint | ≥ 50 % "
        f"| **{ratio:.0%}** ({r['api_rate']:,.0f} vs {r['bare_rate']:,.0f} req/s) |",
        f"| `POST /api/jobs` latency at {r['api_fixed']['rate']:.0f} req/s offered | — "
        f"| p50 {r['api_fixed']['p50_ms']:.1f} ms, p99 {r['api_fixed']['p99_ms']:.1f} ms "
        f"(bare: p50 {r['bare_fixed']['p50_ms']:.1f} ms, p99 {r['bare_fixed']['p99_ms']:.1f} ms) |",
        f"| Batch submit (`POST /api/jobs/batch`, 1,000 per request, 4 in flight) "
        f"| ≥ 10,000 jobs/s "
        f"| **{r['batch_jobs_per_s']:,.0f} jobs/s** |",
        f"| SSE delivery, worker progress report → client | p50 ≤ 10 ms "
        f"| **p50 {r['sse']['p50_ms']:.1f} ms** (p99 {r['sse']['p99_ms']:.1f} ms) |",
        f"| SSE delivery to {r['sse_fanout']['followers']} clients following one job "
        f"({r['sse_fanout']['reports']} reports) | — "
        f"| p50 {r['sse_fanout']['p50_ms']:.1f} ms, p99 {r['sse_fanout']['p99_ms']:.1f} ms; "
        f"Redis connections the API opened for them: "
        f"{r['sse_fanout']['api_redis_connections_added']} |",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api.api_bench", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="offered load, requests/s")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    results = run(args.rate)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    text = markdown(results)
    print(text)
    if args.write_docs:
        write_section("api-bench", "API (issue 3)", text)


if __name__ == "__main__":
    main()
