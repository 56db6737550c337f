"""A 3-primary Valkey Cluster: one namespace per shard, each served through ``redis+cluster://``.

Real processes on loopback: three cluster nodes (the embedded ``valkey-server``), one
``emp worker`` per namespace, jobs submitted and completed in each namespace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from tests.e2e.worker_processes import until_registered, until_status, worker_env, worker_process
from typer.testing import CliRunner

from emp_queue.cli.main import app
from emp_queue.core.broker import connect
from emp_queue.core.queue import JobQueue
from emp_queue.core.topology import cluster_slot_ranges, spread_namespaces
from emp_queue.models import JobSpec, JobStatus
from emp_queue.testing.replication import LoopbackCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_each_namespace_lives_and_runs_on_its_own_shard(tmp_path: Path) -> None:
    with LoopbackCluster(tmp_path / "cluster", primaries=3) as cluster:
        spread = spread_namespaces(await cluster_slot_ranges(cluster.url), "tenant", 3)
        names = [f"tenant-{index}" for index, _, _ in spread]
        assert len({owner for _, _, owner in spread}) == 3

        clients = [connect(cluster.url, namespace=name) for name in names]
        queues = [
            JobQueue(client, namespace=name) for client, name in zip(clients, names, strict=True)
        ]
        try:
            with (
                worker_process(worker_env(cluster.url, names[0], tmp_path), "--worker-id", "w0")
                as w0,
                worker_process(worker_env(cluster.url, names[1], tmp_path), "--worker-id", "w1")
                as w1,
                worker_process(worker_env(cluster.url, names[2], tmp_path), "--worker-id", "w2")
                as w2,
            ):  # fmt: skip
                workers = zip(queues, (w0, w1, w2), ("w0", "w1", "w2"), strict=True)
                for queue, process, worker_id in workers:
                    await until_registered(queue, worker_id, process)
                spec = JobSpec(service_required="simulation", payload={"steps": 1})
                jobs = await asyncio.gather(
                    *(queue.submit(spec) for queue in queues for _ in range(10))
                )
                for index, job in enumerate(jobs):
                    await until_status(queues[index // 10], job.id, JobStatus.COMPLETED)
        finally:
            for client in clients:
                await client.aclose()

        # Each node holds the keys of its namespace and no other.
        for _, slot, owner in spread:
            port = int(owner.rpartition(":")[2])
            assert cluster.owner(slot) == port
        for port in cluster.ports:
            with redis.Redis(port=port, decode_responses=True) as node:
                prefixes = {key.partition("}")[0] + "}" for key in node.scan_iter(count=1000)}
            [(_, _, owner)] = [entry for entry in spread if entry[2].endswith(f":{port}")]
            owned = names[[entry[2] for entry in spread].index(owner)]
            assert prefixes == {"{" + owned + "}"}

        result = await asyncio.to_thread(
            CliRunner().invoke,
            app, ["shards", "--namespaces", "3", "--prefix", "tenant"],
            env={"EMP_REDIS_URL": cluster.url},
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in names:
        assert name in result.output
