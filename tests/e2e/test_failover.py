"""The broker fails over under load: primary SIGKILLed, a replica promoted by three sentinels.

Real processes on loopback: a Valkey primary, two replicas, three sentinels, two ``emp worker``
processes, an ``emp machine`` agent with one worker, an ``emp api`` process and a producer, all
through ``redis+sentinel://``. The full 5,000-job run is ``python -m bench.failover`` (figures in
docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.failover import run_failover

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_with_durability_no_acknowledged_job_is_lost_and_work_resumes_quickly(
    tmp_path: Path,
) -> None:
    report = await run_failover(
        tmp_path, jobs=300, rate=100, worker_count=2, durable=True, with_api=True, with_machine=True
    )

    assert report.acknowledged == 300
    assert report.lost == []
    assert report.not_terminal == []
    assert report.not_completed == 0
    assert report.failover_s < 15
    assert report.resumed_after_promotion_s is not None
    assert report.resumed_after_promotion_s < 10
    # The API process rode the failover too: ready again, and a job submitted through it ran.
    assert report.api_ready_after_promotion_s is not None
    assert report.api_ready_after_promotion_s < 10
    assert report.api_job_completed is True
    # So did a machine agent and its worker: the same processes (no exit, no restart) kept
    # reporting to the new primary.
    assert report.machine_agent_exited is False
    assert report.machine_worker_restarts == 0
    assert report.machine_status_after_promotion_s is not None
    assert report.machine_status_after_promotion_s < 10
    assert report.machine_worker_beat_after_promotion_s is not None
    assert report.machine_worker_beat_after_promotion_s < 10
