"""Queue statistics are kept up to date by every operation, and nothing scans with KEYS."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from emp_queue import FailureClass, JobError, JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.totals import TIME_BUCKETS

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src" / "emp_queue"
KEYS_COMMAND = re.compile(
    r"""redis\.p?call\(\s*['"]keys['"]"""  # Lua
    r"""|\b(?:redis|client|pipe|pipeline|conn|connection|self\.redis|self\._redis)\.keys\("""
    r"""|(?:execute_command|send_command)\(\s*['"]keys['"]""",
    re.IGNORECASE,
)


async def test_stats_follow_every_transition(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim", "comfyui"]))
    sim = await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(4)])
    comfy = await job_queue.submit_many([JobSpec(service_required="comfyui") for _ in range(2)])
    assert await job_queue.stats() == {"sim": {"pending": 4}, "comfyui": {"pending": 2}}

    [to_complete, to_fail] = await job_queue.claim("w1", count=2)
    assert {to_complete.job.id, to_fail.job.id} == {sim[0].id, sim[1].id}
    assert (await job_queue.stats())["sim"] == {"pending": 2, "assigned": 2}
    await job_queue.report_progress("w1", to_complete.job.id, to_complete.attempt, 10.0)
    await job_queue.complete("w1", to_complete.job.id, to_complete.attempt, None)
    await job_queue.fail(
        "w1",
        to_fail.job.id,
        to_fail.attempt,
        JobError(failure_class=FailureClass.JOB_FAULT, message="bad input"),
    )
    await job_queue.cancel(sim[2].id)
    [running] = [c for c in await job_queue.claim("w1", count=2) if c.job.id == comfy[0].id]
    await job_queue.cancel(running.job.id)

    stats = await job_queue.stats()
    assert stats == {
        "sim": {"completed": 1, "failed": 1, "cancelled": 1, "assigned": 1},
        "comfyui": {"cancelled": 1, "pending": 1},
    }
    actual = Counter(
        (job.service_required, job.status.value)
        for job in [await job_queue.get(j.id) for j in [*sim, *comfy]]
    )
    assert actual == Counter(
        {(service, status): n for service, counts in stats.items() for status, n in counts.items()}
    )


def test_no_source_file_uses_the_keys_command() -> None:
    sources = [*SOURCE_ROOT.rglob("*.py"), *SOURCE_ROOT.rglob("*.lua")]
    assert any(p.name == "claim.lua" for p in sources), f"sources not found under {SOURCE_ROOT}"

    offenders = [
        f"{path.relative_to(SOURCE_ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if KEYS_COMMAND.search(line)
    ]

    assert offenders == []


def test_keys_pattern_catches_the_forms_it_forbids() -> None:
    assert KEYS_COMMAND.search("redis.call('KEYS', prefix .. '*')")
    assert KEYS_COMMAND.search('redis.pcall("keys", "*")')
    assert KEYS_COMMAND.search("await self.redis.keys('emp:*')")
    assert KEYS_COMMAND.search('client.execute_command("KEYS", "*")')
    assert not KEYS_COMMAND.search("local id = KEYS[1]")
    assert not KEYS_COMMAND.search("for name in record.keys():")


async def test_totals_count_claims_outcomes_and_place_times_in_their_buckets(
    job_queue: JobQueue,
) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    done, failed = await job_queue.submit_many([JobSpec(service_required="sim") for _ in range(2)])
    await asyncio.sleep(0.3)  # both wait between 0.25 and 0.5 s
    claims = {claimed.job.id: claimed for claimed in await job_queue.claim("w1", count=2)}
    await asyncio.sleep(0.12)  # runs between 0.1 and 0.25 s
    await job_queue.complete("w1", done.id, claims[done.id].attempt, None)
    failure = JobError(failure_class=FailureClass.JOB_FAULT, message="invalid workflow")
    await job_queue.fail("w1", failed.id, claims[failed.id].attempt, failure)

    totals = await job_queue.totals()

    assert totals.claimed == {"sim": 2}
    assert totals.completed == {"sim": 1}
    assert totals.failed == {("sim", "job_fault"): 1}
    wait, run = totals.wait["sim"], totals.run["sim"]
    assert dict(wait.cumulative())["0.25"] == 0
    assert dict(wait.cumulative())["0.5"] == wait.count == 1
    assert 0.25 < wait.sum_s <= 0.5
    assert dict(run.cumulative())["0.1"] == 0
    assert dict(run.cumulative())["0.25"] == run.count == 1
    assert dict(run.cumulative())["+Inf"] == 1


def test_the_scripts_bucket_bounds_are_the_python_ones() -> None:
    source = (SOURCE_ROOT / "core" / "lua" / "lib.lua").read_text()
    match = re.search(r"TIME_BUCKETS_MS = \{([^}]*)\}", source)
    assert match is not None
    bounds_ms = [int(bound) for bound in match.group(1).split(",")]
    assert bounds_ms == [round(bound * 1000) for bound in TIME_BUCKETS]
