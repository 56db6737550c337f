"""Durability: acknowledged writes wait for replicas (``WAIT``), and say so when too few answer."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from emp_queue.core.queue import JobQueue
from emp_queue.core.scripts import Durability, ReplicaWaitError
from emp_queue.core.settings import CoreSettings
from emp_queue.models import JobSpec, JobStatus, WorkerCapabilities

SPEC = JobSpec(service_required="sim", payload={})


async def test_a_submit_no_replica_confirms_is_reported_not_acknowledged(
    redis_client: Redis, namespace: str
) -> None:
    # The test server has no replicas: five can never confirm.
    queue = JobQueue(redis_client, namespace=namespace, durability=Durability(5, 50))
    with pytest.raises(ReplicaWaitError, match=r"0 of 5 replicas .* within 50 ms") as raised:
        await queue.submit(SPEC.model_copy(update={"id": "j-1"}))
    # A broker outage to the caller: workers keep their results and send them again.
    assert isinstance(raised.value, RedisConnectionError)
    # The write did reach the primary; a resubmit with the same id does not duplicate it.
    assert (await queue.get("j-1")).service_required == "sim"


async def test_claims_and_heartbeats_do_not_wait_but_completions_do(
    redis_client: Redis, namespace: str
) -> None:
    plain = JobQueue(redis_client, namespace=namespace)
    durable = JobQueue(redis_client, namespace=namespace, durability=Durability(5, 50))
    job = await plain.submit(SPEC)
    await durable.register_worker("w", WorkerCapabilities(services=["sim"]))
    [claimed] = await durable.claim("w")
    beat = await durable.heartbeat("w", [(job.id, claimed.attempt)], "busy")
    assert beat.revocations == []
    with pytest.raises(ReplicaWaitError, match="the complete was written"):
        await durable.complete("w", job.id, claimed.attempt, {"ok": True})
    assert (await plain.get(job.id)).status == JobStatus.COMPLETED


async def test_durability_off_writes_as_before(redis_client: Redis, namespace: str) -> None:
    queue = JobQueue(redis_client, namespace=namespace, durability=Durability(0, 50))
    job = await queue.submit(SPEC)
    assert (await queue.get(job.id)).id == job.id


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_REDIS_WAIT_REPLICAS", "1")
    monkeypatch.setenv("EMP_REDIS_WAIT_TIMEOUT_MS", "250")
    settings = CoreSettings()
    assert (settings.redis_wait_replicas, settings.redis_wait_timeout_ms) == (1, 250)
