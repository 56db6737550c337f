"""The contract every connector must keep, as a pytest class to subclass.

Subclass :class:`ConnectorContract` once per connector and provide the fixtures it names;
every test below then runs against that connector::

    class TestMyConnector(ConnectorContract):
        @pytest_asyncio.fixture
        async def connector(self, my_fake) -> AsyncIterator[Connector]:
            connector = MyConnector(MyConnector.Config(url=my_fake.url))
            await connector.start()
            yield connector
            await connector.close()

        @pytest.fixture
        def ok_payload(self) -> dict[str, Any]: ...       # a job that succeeds
        @pytest.fixture
        def bad_payload(self) -> dict[str, Any]: ...      # a job the service rejects
        @pytest.fixture
        def slow_payload(self) -> dict[str, Any]: ...     # a job that runs for seconds
        @pytest.fixture
        def unreachable(self) -> Connector: ...           # configured for a closed port

The same class is what a third-party connector's own test suite subclasses.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from emp_queue.connectors.base import Connector, Discovery
from emp_queue.errors import JobFailedError
from emp_queue.models import FailureClass, Job, JobStatus
from emp_queue.storage import AssetStorage, LocalDirectoryBackend, StoredAsset

MAX_INLINE_RESULT_BYTES = 64 * 1024
"""A result bigger than this should have gone to the asset store."""


def make_job(
    service: str,
    payload: dict[str, Any],
    ctx: dict[str, Any] | None = None,
    customer_id: str | None = None,
) -> Job:
    """A job as the worker would hand it over after a claim."""
    return Job(
        id=str(uuid.uuid4()),
        service_required=service,
        priority=50,
        payload=payload,
        requirements={},
        max_attempts=3,
        status=JobStatus.IN_PROGRESS,
        attempt=1,
        seq=1,
        created_at=int(time.time() * 1000),
        ctx=ctx or {},
        customer_id=customer_id,
    )


@dataclass
class RecordingJob:
    """A :class:`~emp_queue.connectors.base.RunningJob` that records what the connector did."""

    job: Job
    storage: AssetStorage
    attempt: int = 1
    reports: list[tuple[float | None, str | None]] = field(default_factory=list)
    assets: list[StoredAsset] = field(default_factory=list)
    first_progress: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        self.reports.append((fraction, message))
        self.first_progress.set()

    async def store(
        self, data: bytes, *, content_type: str, filename: str | None = None
    ) -> StoredAsset:
        asset = await self.storage.store(
            self.job.id,
            self.job.ctx,
            data,
            content_type=content_type,
            filename=filename,
            index=len(self.assets),
        )
        self.assets.append(asset)
        return asset

    async def read_upload(self, ref: str) -> bytes:
        return await self.storage.read_upload(ref, self.job.customer_id)


def local_storage(root: Path) -> AssetStorage:
    """A local-directory asset store under ``root`` (what the contract tests use)."""
    backend = LocalDirectoryBackend(root, "http://127.0.0.1:3331/assets")
    return AssetStorage({"local": backend}, "local", "assets")


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ConnectorContract:
    """Behaviour shared by every connector; see the module docstring for the fixtures."""

    cancel_within_s: float = 1.0
    remote: bool = True
    """False for a connector with no service behind it (``simulation``): no unreachable case."""

    @pytest.fixture
    def storage(self, tmp_path: Path) -> AssetStorage:
        return local_storage(tmp_path / "assets")

    @pytest.fixture
    def service(self, connector: Connector) -> str:
        return connector.kind

    def running(self, service: str, payload: dict[str, Any], storage: AssetStorage) -> RecordingJob:
        return RecordingJob(make_job(service, payload), storage)

    @pytest_asyncio.fixture
    async def connector(self) -> AsyncIterator[Connector]:  # pragma: no cover - overridden
        raise NotImplementedError("subclasses provide the `connector` fixture")
        yield

    async def test_discovery_reports_models(self, connector: Connector) -> None:
        found = await connector.discover()
        assert isinstance(found, Discovery)
        assert found.models.installed, "a connector must say which models it can serve"
        assert set(found.models.loaded) <= set(found.models.installed) | set(found.models.loaded)

    async def test_success_gives_a_small_json_result_and_progress(
        self, connector: Connector, service: str, ok_payload: dict[str, Any], storage: AssetStorage
    ) -> None:
        job = self.running(service, ok_payload, storage)
        result = await connector.run(job)
        encoded = json.dumps(result)
        assert isinstance(result, dict)
        assert result
        assert len(encoded) <= MAX_INLINE_RESULT_BYTES, "large outputs belong in the asset store"
        fractions = [f for f, _ in job.reports if f is not None]
        assert fractions, "a connector reports progress"
        assert all(0.0 <= f <= 1.0 for f in fractions)
        assert fractions == sorted(fractions), f"progress went backwards: {fractions}"
        for asset in job.assets:
            assert asset.url in encoded, "every stored asset is referenced by the result"

    async def test_rejected_input_is_a_job_fault(
        self, connector: Connector, service: str, bad_payload: dict[str, Any], storage: AssetStorage
    ) -> None:
        with pytest.raises(JobFailedError) as failure:
            await connector.run(self.running(service, bad_payload, storage))
        assert failure.value.failure_class == FailureClass.JOB_FAULT
        assert str(failure.value), "the failure says what was wrong"

    async def test_cancel_stops_the_run_within_a_second(
        self,
        connector: Connector,
        service: str,
        slow_payload: dict[str, Any],
        storage: AssetStorage,
    ) -> None:
        job = self.running(service, slow_payload, storage)
        task = asyncio.create_task(connector.run(job))
        async with asyncio.timeout(10):
            await job.first_progress.wait()
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(self.cancel_within_s + 1):
                await task
        assert time.monotonic() - cancelled_at <= self.cancel_within_s

    async def test_connector_still_works_after_a_cancel(
        self,
        connector: Connector,
        service: str,
        slow_payload: dict[str, Any],
        ok_payload: dict[str, Any],
        storage: AssetStorage,
    ) -> None:
        job = self.running(service, slow_payload, storage)
        task = asyncio.create_task(connector.run(job))
        async with asyncio.timeout(10):
            await job.first_progress.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await connector.run(self.running(service, ok_payload, storage))

    async def test_unreachable_service_is_a_service_fault(
        self, request: pytest.FixtureRequest, ok_payload: dict[str, Any], storage: AssetStorage
    ) -> None:
        if not self.remote:
            pytest.skip(f"{type(self).__name__} has no remote service to lose")
        unreachable: Connector = request.getfixturevalue("unreachable")
        with pytest.raises(JobFailedError) as failure:
            await self._start_and_run(unreachable, ok_payload, storage)
        assert failure.value.failure_class == FailureClass.SERVICE_FAULT

    async def _start_and_run(
        self, connector: Connector, payload: dict[str, Any], storage: AssetStorage
    ) -> None:
        await connector.start()
        try:
            await connector.run(self.running(connector.kind, payload, storage))
        finally:
            await connector.close()

    async def test_close_is_idempotent(self, connector: Connector) -> None:
        await connector.close()
        await connector.close()
