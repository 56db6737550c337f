"""Stands in for ``emp worker`` in the agent's tests: takes the same arguments, registers
in the queue (so the agent's real readiness probe sees it), and deregisters on SIGTERM.

With ``--require-url`` it first checks that the service URL the agent gave it (the
``EMP_*_URL`` variable) already answers, and exits 4 when it does not: a worker started
before its service was ready fails the test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request

from emp_queue.core.broker import connect
from emp_queue.core.queue import JobQueue
from emp_queue.models import WorkerCapabilities


def _services_answer() -> bool:
    """Every service URL the agent handed over accepts connections (any HTTP status)."""
    for name, url in os.environ.items():
        if not (name.startswith("EMP_") and name.endswith("_URL")) or "REDIS" in name:
            continue  # EMP_REDIS_URL, EMP_TEST_REDIS_URL: the broker, not a service
        try:
            urllib.request.urlopen(url, timeout=2).close()
        except urllib.error.HTTPError:
            continue
        except OSError:
            return False
    return True


async def run(args: argparse.Namespace) -> int:
    if args.require_url and not _services_answer():
        print("service not ready when the worker started", flush=True)
        return 4
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    redis = connect(os.environ["EMP_REDIS_URL"])
    queue = JobQueue(redis, namespace=os.environ["EMP_NAMESPACE"])
    capabilities = WorkerCapabilities(services=args.service)
    await queue.register_worker(args.worker_id, capabilities, machine_id=args.machine_id)
    print(
        json.dumps({"event": "worker_started", "level": "info", "id": args.worker_id}), flush=True
    )
    await stop.wait()
    await queue.deregister_worker(args.worker_id)
    print(json.dumps({"event": "worker_stopped", "level": "info"}), flush=True)
    await redis.aclose()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--connector", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--machine-id", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--service", action="append", required=True)
    parser.add_argument("--require-url", action="store_true")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
