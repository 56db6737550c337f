"""Latency of `emp api` requests while its Redis is frozen (SIGSTOP), and what a client sees.

    .venv/bin/python -m bench.frozen_api_bench [--requests 10]

A real `emp api` process over a Valkey of the bench's own. With the server frozen, each
request (a job listing, a submission without an id) is timed to its 503; then the server is
thawed and the submissions are retried with the ids their 503s named, and the jobs counted:
one per submission, never two. EMP_API_ANSWER_TIMEOUT_S is left at its default (3 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from tests.e2e.api_process import running_api, wait_ready

from emp_queue.api.key_store import ApiKeyStore, Role
from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys
from emp_queue.testing.replication import FreezableValkey

NAMESPACE = "frozenbench"


async def create_key(url: str) -> str:
    redis = connect(url)
    try:
        key = await ApiKeyStore(redis, Keys(NAMESPACE)).create(Role.CLIENT, customer_id="bench")
        return key.secret
    finally:
        await redis.aclose()


def timed(call: object) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response: httpx.Response = call()  # type: ignore[operator]
    return time.monotonic() - started, response


def summary(name: str, seconds: list[float], codes: list[int]) -> str:
    return (
        f"{name}: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s, "
        f"statuses {sorted(set(codes))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, FreezableValkey(Path(data)) as valkey:
        secret = asyncio.run(create_key(valkey.url))
        # A key checked once and a rate window longer than the run: every request reaches
        # its route, and a submission reaches the store (where a 503 names its id).
        env = {"EMP_API_KEY_CACHE_S": "600", "EMP_API_RATE_LIMIT_PER_S": "1",
               "EMP_API_RATE_LIMIT_BURST": "3600"}  # fmt: skip
        with running_api(valkey.url, NAMESPACE, extra_env=env) as (process, url):
            wait_ready(url, process, timeout_s=60)
            http = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
            )
            assert http.get("/api/jobs").status_code == 200  # the key is cached from here
            listings, submits = [], []
            with valkey.frozen():
                for _ in range(args.requests):
                    listings.append(timed(lambda: http.get("/api/jobs")))
                    body = {"service_required": "sim"}
                    submits.append(timed(lambda b=body: http.post("/api/jobs", json=b)))
            print(f"Redis frozen, {args.requests} requests of each kind, one at a time:")
            print(summary("  GET /api/jobs", [s for s, _ in listings],
                          [r.status_code for _, r in listings]))  # fmt: skip
            print(summary("  POST /api/jobs", [s for s, _ in submits],
                          [r.status_code for _, r in submits]))  # fmt: skip
            ids = [i for _, r in submits for i in r.json().get("job_ids", [])]
            for job_id in ids:
                retry = http.post("/api/jobs", json={"service_required": "sim", "id": job_id})
                assert retry.status_code == 201, retry.text
            listed = http.get("/api/jobs", params={"limit": 500}).json()["jobs"]
            print(
                f"after the thaw: {len(ids)} 503s named an id; retried with it, "
                f"{len(listed)} jobs exist ({len({j['id'] for j in listed})} distinct ids)"
            )


if __name__ == "__main__":
    main()
