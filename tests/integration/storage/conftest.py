"""A real S3-compatible server (moto's standalone server) on a loopback port, as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from emp_queue.storage import ObjectStoreBackend, TransferLimits
from emp_queue.testing.connector_contract import closed_port

REGION = "us-east-1"
# Uploads to a dead endpoint must fail within a test's time, not obstore's default 3 minutes.
TEST_LIMITS = TransferLimits(timeout_s=10, connect_timeout_s=2, max_retries=1, retry_timeout_s=3)


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def create_bucket(self) -> str:
        """A fresh, empty bucket (moto accepts an unsigned CreateBucket)."""
        bucket = f"test-{uuid.uuid4().hex[:12]}"
        response = httpx.put(f"{self.endpoint}/{bucket}", timeout=10)
        response.raise_for_status()
        return bucket

    def backend(self, access_key_id: str = "test-key") -> ObjectStoreBackend:
        return ObjectStoreBackend.s3(
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=access_key_id,
            secret_access_key="test-secret",
            allow_http=True,
            limits=TEST_LIMITS,
        )


@contextmanager
def moto_server(**env: str) -> Iterator[S3Server]:
    port = closed_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = S3Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{server.endpoint}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto server did not start (exit {process.poll()})"
                    ) from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server_checking_credentials() -> Iterator[S3Server]:
    """A moto server that authenticates every request (its IAM knows no keys)."""
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as server:
        yield server
