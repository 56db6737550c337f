"""The simulation connector: the contract, and its injected behaviours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from emp_queue.connectors.simulation import SimulationConfig, SimulationConnector
from emp_queue.errors import JobFailedError
from emp_queue.media import png_size
from emp_queue.models import FailureClass
from emp_queue.storage import AssetStorage
from emp_queue.testing.connector_contract import ConnectorContract, RecordingJob, make_job


class TestSimulationContract(ConnectorContract):
    remote = False

    @pytest_asyncio.fixture
    async def connector(self) -> AsyncIterator[SimulationConnector]:
        connector = SimulationConnector(SimulationConfig())
        await connector.start()
        yield connector
        await connector.close()

    @pytest.fixture
    def ok_payload(self) -> dict[str, Any]:
        return {"steps": 3, "step_delay_s": 0.001, "image": {"width": 8, "height": 8}}

    @pytest.fixture
    def bad_payload(self) -> dict[str, Any]:
        return {"steps": -1}

    @pytest.fixture
    def slow_payload(self) -> dict[str, Any]:
        return {"steps": 100, "step_delay_s": 0.1}


@pytest.fixture
def connector() -> SimulationConnector:
    return SimulationConnector(SimulationConfig())


async def test_same_payload_same_result(connector: SimulationConnector, tmp_path: Path) -> None:
    from emp_queue.testing.connector_contract import local_storage

    storage = local_storage(tmp_path)
    payload = {"steps": 1, "step_delay_s": 0, "seed": "s1", "image": {"width": 4, "height": 2}}
    first = await connector.run(RecordingJob(make_job("simulation", payload), storage))
    second = await connector.run(RecordingJob(make_job("simulation", payload), storage))
    assert first["fingerprint"] == second["fingerprint"]
    assert first["outputs"][0]["sha256"] == second["outputs"][0]["sha256"]
    stored = tmp_path / "assets" / first["outputs"][0]["key"]
    assert png_size(stored.read_bytes()) == (4, 2)


@pytest.mark.parametrize("failure_class", ["job_fault", "service_fault", "worker_fault"])
async def test_injected_failure_at_a_step(
    connector: SimulationConnector, storage: AssetStorage, failure_class: str
) -> None:
    job = RecordingJob(
        make_job(
            "simulation",
            {"steps": 5, "step_delay_s": 0, "fail": {"at_step": 2, "failure_class": failure_class}},
        ),
        storage,
    )
    with pytest.raises(JobFailedError) as failure:
        await connector.run(job)
    assert failure.value.failure_class == FailureClass(failure_class)
    assert [f for f, _ in job.reports] == [0.0, 0.2, 0.4]


async def test_flaky_job_fails_only_its_first_attempts(
    connector: SimulationConnector, storage: AssetStorage
) -> None:
    payload = {"steps": 1, "step_delay_s": 0, "fail": {}, "fail_attempts": 1}
    with pytest.raises(JobFailedError):
        await connector.run(RecordingJob(make_job("simulation", payload), storage, attempt=1))
    assert await connector.run(RecordingJob(make_job("simulation", payload), storage, attempt=2))


async def test_unknown_model_is_a_job_fault(
    connector: SimulationConnector, storage: AssetStorage
) -> None:
    job = RecordingJob(make_job("simulation", {"model": "gpt-9"}), storage)
    with pytest.raises(JobFailedError, match="sim-small") as failure:
        await connector.run(job)
    assert failure.value.failure_class == FailureClass.JOB_FAULT
