"""Recurring schedules: one job per due tick, whoever runs the loop and however often."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from emp_queue import JobQueue, JobSpec, JobStatus
from emp_queue.core.queue_control import ControlTarget, QueueState, set_state
from emp_queue.core.schedules import (
    ScheduleExistsError,
    ScheduleRunner,
    ScheduleSpec,
    ScheduleStore,
    latest_due_tick_ms,
    next_tick_ms,
)


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_ticks_follow_the_cron_in_its_time_zone() -> None:
    assert next_tick_ms("*/15 * * * *", "UTC", ms("2026-03-01T10:07:00")) == ms(
        "2026-03-01T10:15:00"
    )
    # 09:00 in Paris is 08:00 UTC in winter.
    assert next_tick_ms("0 9 * * *", "Europe/Paris", ms("2026-01-10T12:00:00")) == ms(
        "2026-01-11T08:00:00"
    )
    assert latest_due_tick_ms(
        "*/5 * * * *", "UTC", ms("2026-03-01T10:00:00"), ms("2026-03-01T10:17:00")
    ) == ms("2026-03-01T10:15:00")
    assert (
        latest_due_tick_ms(
            "*/5 * * * *", "UTC", ms("2026-03-01T10:00:00"), ms("2026-03-01T10:04:59")
        )
        is None
    )


def test_bad_schedules_are_refused_with_what_to_write() -> None:
    job = JobSpec(service_required="sim")
    with pytest.raises(ValidationError, match="five fields"):
        ScheduleSpec(cron="every minute", job=job)
    with pytest.raises(ValidationError, match="no IANA time zone"):
        ScheduleSpec(cron="* * * * *", timezone="Mars/Olympus", job=job)
    with pytest.raises(ValidationError, match="sets id, delay_s"):
        ScheduleSpec(cron="* * * * *", job=JobSpec(id="x", service_required="sim", delay_s=5))


async def test_each_due_tick_submits_one_job_however_many_runners(job_queue: JobQueue) -> None:
    store = ScheduleStore(job_queue.redis, job_queue.keys)
    spec = ScheduleSpec(
        cron="*/5 * * * *",
        job=JobSpec(service_required="sim", payload={"n": 1}, customer_id="acme"),
    )
    schedule = await store.create(spec, "every5")
    created = schedule.created_at
    start = created - created % 300_000  # the tick at or before creation
    runners = [ScheduleRunner(store, job_queue) for _ in range(3)]

    now = start + 300_000 + 1000  # one tick due
    submitted = await asyncio.gather(*(r.run_due(now) for r in runners))
    tick = start + 300_000
    assert {job_id for ids in submitted for job_id in ids} == {f"every5.{tick}"}
    [job] = (await job_queue.list_jobs(customer_id="acme")).jobs
    assert job.id == f"every5.{tick}"
    assert job.payload == {"n": 1}
    assert job.status is JobStatus.UNWORKABLE  # a job like any other: no worker serves sim

    # Three ticks later (two missed): only the latest is submitted, once.
    later = start + 4 * 300_000 + 1000
    for runner in runners:
        await runner.run_due(later)
    ids = sorted(j.id for j in (await job_queue.list_jobs(customer_id="acme")).jobs)
    assert ids == sorted([f"every5.{tick}", f"every5.{start + 4 * 300_000}"])

    shown = await store.get("every5")
    assert shown.last_tick_ms == start + 4 * 300_000
    assert shown.last_job_id == f"every5.{start + 4 * 300_000}"
    assert shown.next_tick_ms == start + 5 * 300_000


async def test_a_refused_tick_is_recorded_and_the_next_one_runs(job_queue: JobQueue) -> None:
    store = ScheduleStore(job_queue.redis, job_queue.keys)
    schedule = await store.create(
        ScheduleSpec(cron="* * * * *", job=JobSpec(service_required="sim")), "minutely"
    )
    await set_state(
        job_queue.redis, job_queue.keys, ControlTarget.SERVICE, "sim", QueueState.DRAINING
    )
    runner = ScheduleRunner(store, job_queue)
    base = schedule.created_at - schedule.created_at % 60_000
    assert await runner.run_due(base + 61_000) == []
    assert "draining" in ((await store.get("minutely")).last_error or "")

    await set_state(job_queue.redis, job_queue.keys, ControlTarget.SERVICE, "sim", QueueState.OPEN)
    assert await runner.run_due(base + 121_000) == [f"minutely.{base + 120_000}"]
    assert (await store.get("minutely")).last_error is None


async def test_ids_are_unique_and_deleting_stops_the_ticks(job_queue: JobQueue) -> None:
    store = ScheduleStore(job_queue.redis, job_queue.keys)
    spec = ScheduleSpec(cron="* * * * *", job=JobSpec(service_required="sim"))
    schedule = await store.create(spec, "s1")
    with pytest.raises(ScheduleExistsError):
        await store.create(spec, "s1")
    assert await store.delete("s1")
    assert await ScheduleRunner(store, job_queue).run_due(schedule.created_at + 120_000) == []
    assert await store.all() == []
