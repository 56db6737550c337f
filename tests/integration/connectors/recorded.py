"""Running a connector on a recorded job, for the connector tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from emp_queue.connectors.base import Connector
from emp_queue.errors import JobFailedError
from emp_queue.testing.connector_contract import RecordingJob


@dataclass
class WatchingJob(RecordingJob):
    """A recorded job that also signals when a progress message contains ``wanted``."""

    wanted: str = ""
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def progress(self, fraction: float | None, message: str | None = None) -> None:
        await super().progress(fraction, message)
        if message and self.wanted and self.wanted in message:
            self.seen.set()


async def failure_of(connector: Connector, job: RecordingJob) -> JobFailedError:
    """The failure ``job`` ends with (the test fails if it succeeds)."""
    with pytest.raises(JobFailedError) as failure:
        await connector.run(job)
    return failure.value
