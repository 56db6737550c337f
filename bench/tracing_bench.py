"""What tracing costs the hot paths: CPU per submit and per job through a worker, with the
code before tracing existed, with tracing off, and with tracing on.

    python -m bench.tracing_bench [--jobs 3000] [--rounds 3] [--before REV] [--write-docs]

CPU time of this process (``time.process_time``, all its threads: the span exporter's
included), not wall time, so that a machine shared with other work skews the figures less.
Redis is a private Valkey in another process (its CPU is not counted).

- **submit**: ``POST /api/jobs`` called as ASGI messages straight into the app (no HTTP
  server, no client library): key check, body parsing, the grouped submit script, the reply;
  32 at a time.
- **worker**: a ``Worker`` with a handler that returns at once, over jobs submitted
  beforehand: claim (batched), run, completion (batched), ``concurrency`` 8.

``before`` runs the same measures in a subprocess on the source tree of ``REV`` (default: the
commit before tracing was added), exported with ``git archive``; ``off`` and ``on`` run on
this tree, ``on`` with a batch span processor and an exporter that encodes every span to
OTLP protobuf and drops the bytes (the OTLP exporter's work, without a collector). Rounds are
interleaved (before, off, on, before, ...) and the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "bench" / "results" / "tracing.json"
BEFORE_TRACING = "fcdea8a"
"""main just before the commit that added OpenTelemetry tracing (#17)."""
SUBMIT_CONCURRENCY = 32
WORKER_CONCURRENCY = 8
BODY = json.dumps({"service_required": "sim", "payload": {"prompt": "a cat"}}).encode()


async def asgi_post(app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One request through the ASGI app as a server would hand it over; the status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3331),
    }  # fmt: skip
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that never disconnects
        return {}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def tracing_on(service_name: str) -> Any:
    """Tracing as ``OTEL_TRACES_EXPORTER=otlp`` starts it, with the OTLP exporter's encoding
    (spans to protobuf bytes) but no collector to send them to."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from emp_queue.telemetry.tracing import JobTracing

    class EncodeOnly(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    provider = TracerProvider(resource=Resource({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(EncodeOnly()))
    return JobTracing(provider)


async def submit_cpu_us(url: str, namespace: str, jobs: int, traced: bool) -> float:
    from emp_queue.api.app import create_app
    from emp_queue.api.key_store import ApiKeyStore, Role
    from emp_queue.api.settings import ApiSettings
    from emp_queue.core.broker import connect
    from emp_queue.core.keys import Keys
    from emp_queue.core.settings import CoreSettings

    redis = connect(url)
    settings = ApiSettings(rate_limit_per_s=None, sweep_interval_s=None, services=["sim"])
    core = CoreSettings(namespace=namespace, redis_url=url)
    tracing = tracing_on("emp-api") if traced else None
    app = (
        create_app(settings, core, redis, tracing=tracing)
        if traced
        else create_app(settings, core, redis)  # the code before tracing has no such argument
    )
    issued = await ApiKeyStore(redis, Keys(namespace)).create(Role.ADMIN, label="bench")
    headers = [
        (b"authorization", f"Bearer {issued.secret}".encode()),
        (b"content-type", b"application/json"),
    ]
    sem = asyncio.Semaphore(SUBMIT_CONCURRENCY)

    async def one() -> None:
        async with sem:
            status = await asgi_post(app, "/api/jobs", BODY, headers)
            if status != 201:
                raise RuntimeError(f"submit answered {status}")

    await asyncio.gather(*(one() for _ in range(200)))  # warm-up
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(jobs)))
    if tracing is not None:
        tracing.provider.force_flush()
    cpu_s = time.process_time() - started
    if tracing is not None:
        tracing.close()
    await redis.aclose()
    return cpu_s / jobs * 1e6


async def worker_cpu_us(url: str, namespace: str, jobs: int, traced: bool) -> float:
    from emp_queue.core.broker import connect
    from emp_queue.core.queue import JobQueue
    from emp_queue.models import JobSpec, WorkerCapabilities
    from emp_queue.worker.runtime import Worker
    from emp_queue.worker.settings import WorkerSettings

    redis = connect(url)
    queue = JobQueue(redis, namespace=namespace)
    for start in range(0, jobs, 1000):
        count = min(1000, jobs - start)
        await queue.submit_many([JobSpec(service_required="sim") for _ in range(count)])
    done = asyncio.Event()
    ran = 0

    async def handler(_context: Any) -> dict[str, Any]:
        nonlocal ran
        ran += 1
        if ran == jobs:
            done.set()
        return {}

    tracing = tracing_on("emp-worker") if traced else None
    options: dict[str, Any] = {"tracing": tracing} if traced else {}
    settings = WorkerSettings(concurrency=WORKER_CONCURRENCY, drain_grace_s=30)
    worker = Worker(
        queue, "bench-worker", WorkerCapabilities(services=["sim"]), handler, settings, **options
    )
    started = time.process_time()
    running = asyncio.create_task(worker.run())
    await done.wait()
    worker.stop()
    await running  # drains: the last completions are sent
    if tracing is not None:
        tracing.provider.force_flush()
    cpu_s = time.process_time() - started
    if tracing is not None:
        tracing.close()
    await redis.aclose()
    return cpu_s / jobs * 1e6


async def measure(url: str, jobs: int, traced: bool, label: str) -> dict[str, float]:
    stamp = f"{label}-{time.time_ns()}"
    submit = await submit_cpu_us(url, f"bench-trace-submit-{stamp}", jobs, traced)
    worker = await worker_cpu_us(url, f"bench-trace-worker-{stamp}", jobs, traced)
    return {"submit_cpu_us": round(submit, 1), "worker_cpu_us_per_job": round(worker, 1)}


@contextlib.contextmanager
def source_of(rev: str) -> Iterator[Path]:
    """``src/`` as it was at ``rev``, in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(
            ["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src"], check=True
        )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / "src"


def run_mode(url: str, jobs: int, mode: str, before_src: Path | None) -> dict[str, float]:
    """One round of one mode, in a fresh process (``before``: on the old source tree)."""
    env = dict(os.environ)
    if mode == "before":
        assert before_src is not None
        env["PYTHONPATH"] = str(before_src)
    command = [sys.executable, "-m", "bench.tracing_bench", "--one", mode, "--url", url,
               "--jobs", str(jobs)]  # fmt: skip
    output = subprocess.run(
        command, cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def markdown(results: dict[str, Any]) -> str:
    rows = results["median"]
    base = rows["before"]
    lines = [
        f"Command: `{results['command']}` ({results['machine']}; {results['load']} when it "
        "started). CPU time of the measuring process per operation, median of "
        f"{results['rounds']} interleaved rounds of {results['jobs']} jobs each.",
        "",
        "| code | submit: CPU µs per `POST /api/jobs` | vs before | worker: CPU µs per job "
        "(claim, run, complete) | vs before |",
        "|---|---|---|---|---|",
    ]
    for mode, title in (
        ("before", f"before tracing (`{results['before_rev']}`)"),
        ("off", "tracing off (default)"),
        ("on", "tracing on (batch processor, OTLP encoding, no collector)"),
    ):
        row = rows[mode]
        submit_change = row["submit_cpu_us"] / base["submit_cpu_us"] - 1
        worker_change = row["worker_cpu_us_per_job"] / base["worker_cpu_us_per_job"] - 1
        lines.append(
            f"| {title} | {row['submit_cpu_us']} | {submit_change:+.1%} | "
            f"{row['worker_cpu_us_per_job']} | {worker_change:+.1%} |"
        )
    lines += ["", "Every round: " + "; ".join(
        f"{mode} {r['submit_cpu_us']}/{r['worker_cpu_us_per_job']}"
        for mode, r in results["all"]
    ) + " (submit/worker µs)."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=BEFORE_TRACING, help="git revision without tracing")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--one", choices=("before", "off", "on"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        traced = args.one == "on"
        print(json.dumps(asyncio.run(measure(args.url, args.jobs, traced, args.one))))
        return

    from bench.docs_section import write_section
    from emp_queue.core.broker import EmbeddedValkey

    load = load_average()
    every: list[tuple[str, dict[str, float]]] = []
    with (
        tempfile.TemporaryDirectory() as data_dir,
        EmbeddedValkey(Path(data_dir), persistent=False) as server,
        source_of(args.before) as before_src,
    ):
        for round_no in range(args.rounds):
            for mode in ("before", "off", "on"):
                result = run_mode(server.url, args.jobs, mode, before_src)
                print(f"round {round_no + 1} {mode}: {result}", flush=True)
                every.append((mode, result))
    median = {
        mode: {
            key: round(statistics.median(r[key] for m, r in every if m == mode), 1)
            for key in ("submit_cpu_us", "worker_cpu_us_per_job")
        }
        for mode in ("before", "off", "on")
    }
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "load": load,
        "jobs": args.jobs,
        "rounds": args.rounds,
        "before_rev": args.before,
        "command": "python -m bench.tracing_bench --write-docs",
        "median": median,
        "all": every,
    }
    RESULTS.write_text(json.dumps(results, indent=2))
    text = markdown(results)
    print(text)
    if args.write_docs:
        write_section("tracing", "Tracing off and on (issue 17)", text)


if __name__ == "__main__":
    main()
