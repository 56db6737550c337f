"""Queue statistics are kept up to date by every operation, and nothing scans with KEYS."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from emp_queue import FailureClass, JobError, JobQueue, JobSpec, WorkerCapabilities

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
